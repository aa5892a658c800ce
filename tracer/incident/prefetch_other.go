//go:build !amd64 && !arm64

package incident

import "unsafe"

// prefetchLines is a hint; other architectures go without it.
func prefetchLines(p unsafe.Pointer, lines int) {}
