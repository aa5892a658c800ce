package incident

import "unsafe"

// prefetch asks for the cache lines of the n bytes at p to be loaded, and
// returns at once: a load would wait for them. p must point into an object
// that starts on a cache line (the correlator's tables, which are large
// allocations, so page-aligned).
func prefetch(p unsafe.Pointer, n uintptr) {
	off := uintptr(p) & 63
	prefetchLines(unsafe.Add(p, -int(off)), int((off+n+63)/64))
}
