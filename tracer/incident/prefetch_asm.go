//go:build amd64 || arm64

package incident

import "unsafe"

// prefetchLines issues a prefetch instruction for each of lines cache
// lines from p on (prefetch_$GOARCH.s).
//
//go:noescape
func prefetchLines(p unsafe.Pointer, lines int)
