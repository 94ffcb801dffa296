// chunks/meta_arena: memory for magslab's own metadata (chunk and slab
// descriptors, magazines, thread caches, page-map leaves). It is mapped in
// regions and never unmapped, so metadata is type-stable: a stale pointer to a
// descriptor always points at readable memory of the same type. Freed
// descriptors are recycled by their owners, never returned here.
#pragma once
#include <cstddef>

namespace magslab::meta {

// Zeroed memory, 64-byte aligned. nullptr when the OS refuses memory.
void* alloc(size_t size);
// As alloc(), from regions of their own: for magazines, so that the pages
// of runs of them hold nothing else (depot.cc gives back those of empty ones).
void* alloc_apart(size_t size);
// Zeroed memory, page-aligned and a whole number of pages, for descriptors
// whose unused parts are decommitted while they wait to be recycled (the
// pages then read as zero again, as fresh ones do).
void* alloc_pages(size_t size);
// Bytes mapped for metadata so far (address space; committed as touched).
size_t mapped_bytes();
// Account for metadata mapped elsewhere (page-map leaves).
void note_mapped(size_t bytes);

// fork(): held across the fork so the child never inherits it locked mid-update.
void lock_for_fork();
void unlock_after_fork();

}  // namespace magslab::meta
