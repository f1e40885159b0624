package main

import "unsafe"

// Memory the bridge asks for (cabi_realloc) to pass lists and strings into the plugin. The
// bindings read Go values straight out of it, so it must outlive the garbage collector's next
// run until they do: every block stays pinned here until the next call into the plugin, by
// which time whatever still needs it is referenced from Go values.
var pinned [][]uint64

//go:wasmexport cabi_realloc
func cabiRealloc(ptr unsafe.Pointer, oldSize, align, newSize uint32) unsafe.Pointer {
	if newSize <= oldSize && ptr != nil {
		return ptr
	}
	// Blocks of uint64 are 8-byte aligned, enough for every Canonical ABI type.
	block := make([]uint64, (newSize+7)/8+1)
	pinned = append(pinned, block)
	p := unsafe.Pointer(unsafe.SliceData(block))
	if oldSize > 0 && ptr != nil {
		copy(unsafe.Slice((*byte)(p), newSize), unsafe.Slice((*byte)(ptr), oldSize))
	}
	return p
}

// unpin lets the blocks of earlier calls go; called at the start of each call.
func unpin() {
	clear(pinned)
	pinned = pinned[:0]
}
