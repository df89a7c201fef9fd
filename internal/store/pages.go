package store

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/fnv"
)

// checkPages walks the page graph of a bbolt file in memory before bbolt
// does, with every offset, count and page number bounded by the file and
// every page visited at most once.
//
// bbolt trusts its pages: a branch page whose child points back at an
// ancestor makes its cursor descend forever (memory) and its consistency
// check recurse forever (a Go stack overflow, which no recover catches),
// and a freelist or element count past the page makes it read out of
// bounds. A damaged state file must be refused, not crash the key server
// that opens it. The walk follows bbolt's on-disk format (v1.x, format
// version 2 of its meta page, little-endian): 16-octet page headers (id,
// flags, count, overflow), meta at offset 16 of pages 0 and 1, 16-octet
// branch elements (pos, ksize, pgid) and leaf elements (flags, pos, ksize,
// vsize), bucket values of 16 octets (root, sequence) followed, for an
// inline bucket (root 0), by its page.
func checkPages(b []byte) error {
	const (
		hdr           = 16
		metaSize      = 64
		branchFlag    = 0x01
		leafFlag      = 0x02
		metaFlag      = 0x04
		freelistFlag  = 0x10
		bucketLeaf    = 0x01
		maxDepth      = 64
		boltMagic     = 0xED0CDAED
		boltVersion   = 2
		minPageSize   = 512
		maxPageSize   = 1 << 16
		maxPageCount  = 0xFFFF // a count of 0xFFFF is followed by the real count (freelist)
		bucketHdrSize = 16
	)
	le := binary.LittleEndian
	type meta struct {
		pageSize      uint64
		root, free    uint64
		hwm, txid     uint64
		valid         bool
		invalidReason string
	}
	readMeta := func(off uint64) meta {
		if off+hdr+metaSize > uint64(len(b)) {
			return meta{invalidReason: "meta page past the end of the file"}
		}
		p := b[off:]
		m := p[hdr : hdr+metaSize]
		h := fnv.New64a()
		h.Write(m[:56])
		switch {
		case le.Uint16(p[8:]) != metaFlag:
			return meta{invalidReason: "meta page has the wrong type"}
		case le.Uint32(m[0:]) != boltMagic:
			return meta{invalidReason: "meta page has no bbolt magic"}
		case le.Uint32(m[4:]) != boltVersion:
			return meta{invalidReason: fmt.Sprintf("bbolt format version %d", le.Uint32(m[4:]))}
		case le.Uint64(m[56:]) != h.Sum64():
			return meta{invalidReason: "meta page checksum mismatch"}
		}
		return meta{pageSize: uint64(le.Uint32(m[8:])), root: le.Uint64(m[16:]), free: le.Uint64(m[32:]),
			hwm: le.Uint64(m[40:]), txid: le.Uint64(m[48:]), valid: true}
	}
	// The two meta pages: bbolt writes them in turn, so a crash may have
	// torn one; the valid one with the larger transaction id is in force.
	goodSize := func(ps uint64) bool { return ps >= minPageSize && ps <= maxPageSize && ps&(ps-1) == 0 }
	m0 := readMeta(0)
	var m1 meta
	if m0.valid && goodSize(m0.pageSize) {
		m1 = readMeta(m0.pageSize)
	} else {
		for ps := uint64(minPageSize); ps <= maxPageSize && !m1.valid; ps *= 2 {
			if m1 = readMeta(ps); m1.valid && m1.pageSize != ps {
				m1 = meta{}
			}
		}
		m0 = meta{invalidReason: m0.invalidReason}
	}
	if m1.valid && m0.valid && m1.pageSize != m0.pageSize {
		m1 = meta{}
	}
	m := m0
	if !m0.valid || m1.valid && m1.txid > m0.txid {
		m = m1
	}
	if !m.valid {
		return fmt.Errorf("no valid meta page (page 0: %s)", m0.invalidReason)
	}
	ps := m.pageSize
	if !goodSize(ps) {
		return fmt.Errorf("page size %d is not a power of two in %d..%d", ps, minPageSize, maxPageSize)
	}
	size := uint64(len(b))
	if m.hwm < 3 || m.hwm > size/ps {
		return fmt.Errorf("the database needs %d pages of %d octets, the file holds %d", m.hwm, ps, size/ps)
	}
	seen := make(map[uint64]bool)
	// page returns the bytes of page id and its overflow pages, marking
	// them seen.
	page := func(id uint64, want uint16, what string) ([]byte, error) {
		if id < 2 || id >= m.hwm {
			return nil, fmt.Errorf("%s: page %d is out of range (2..%d)", what, id, m.hwm-1)
		}
		p := b[id*ps : id*ps+ps]
		if got := le.Uint64(p); got != id {
			return nil, fmt.Errorf("%s: page %d says it is page %d", what, id, got)
		}
		if flags := le.Uint16(p[8:]); flags&want == 0 {
			return nil, fmt.Errorf("%s: page %d has type %#x", what, id, flags)
		}
		span := uint64(le.Uint32(p[12:])) + 1
		if span > m.hwm-id {
			return nil, fmt.Errorf("%s: page %d overflows past the last page", what, id)
		}
		for i := id; i < id+span; i++ {
			if seen[i] {
				return nil, fmt.Errorf("%s: page %d is referenced twice (a cycle or a shared page)", what, i)
			}
			seen[i] = true
		}
		return b[id*ps : (id+span)*ps], nil
	}
	var walk func(p []byte, depth int, what string) error
	// child follows a bucket value or a branch element to its page.
	child := func(id uint64, depth int, what string) error {
		p, err := page(id, branchFlag|leafFlag, what)
		if err != nil {
			return err
		}
		return walk(p, depth+1, what)
	}
	walk = func(p []byte, depth int, what string) error {
		if depth > maxDepth {
			return fmt.Errorf("%s: pages nested deeper than %d", what, maxDepth)
		}
		if len(p) < hdr {
			return fmt.Errorf("%s: page shorter than its header", what)
		}
		flags, count := le.Uint16(p[8:]), uint64(le.Uint16(p[10:]))
		if hdr+count*16 > uint64(len(p)) {
			return fmt.Errorf("%s: page %d has %d elements, more than fit", what, le.Uint64(p), count)
		}
		for i := range count {
			e := hdr + i*16
			switch flags {
			case branchFlag:
				pos, ksize := uint64(le.Uint32(p[e:])), uint64(le.Uint32(p[e+4:]))
				if e+pos+ksize > uint64(len(p)) {
					return fmt.Errorf("%s: branch element %d is past its page", what, i)
				}
				if err := child(le.Uint64(p[e+8:]), depth, what); err != nil {
					return err
				}
			case leafFlag:
				eflags, pos, ksize, vsize := le.Uint32(p[e:]), uint64(le.Uint32(p[e+4:])), uint64(le.Uint32(p[e+8:])), uint64(le.Uint32(p[e+12:]))
				k := e + pos
				if k+ksize+vsize > uint64(len(p)) {
					return fmt.Errorf("%s: leaf element %d is past its page", what, i)
				}
				if eflags&bucketLeaf == 0 {
					continue
				}
				v := p[k+ksize : k+ksize+vsize]
				name := fmt.Sprintf("%s/%q", what, p[k:k+ksize])
				if len(v) < bucketHdrSize {
					return fmt.Errorf("%s: bucket header of %d octets", name, len(v))
				}
				if root := le.Uint64(v); root != 0 {
					if err := child(root, depth, name); err != nil {
						return err
					}
				} else if err := walk(v[bucketHdrSize:], depth+1, name); err != nil { // inline bucket: strictly inside v
					return err
				}
			default:
				return fmt.Errorf("%s: page %d has type %#x where a branch or leaf page belongs", what, le.Uint64(p), flags)
			}
		}
		return nil
	}
	if err := child(m.root, 0, "root bucket"); err != nil {
		return err
	}
	// The freelist: its count (0xFFFF: the real count in the first id)
	// must fit its page, and its ids must be pages of the file.
	if m.free != ^uint64(0) { // bbolt's "no freelist page" (NoFreelistSync)
		f, err := page(m.free, freelistFlag, "freelist")
		if err != nil {
			return err
		}
		n, ids := uint64(le.Uint16(f[10:])), f[hdr:]
		if n == maxPageCount {
			if len(ids) < 8 {
				return errors.New("freelist: count past its page")
			}
			n, ids = le.Uint64(ids), ids[8:]
		}
		if n > uint64(len(ids))/8 {
			return fmt.Errorf("freelist: %d ids do not fit its page", n)
		}
		for i := range n {
			if id := le.Uint64(ids[i*8:]); id < 2 || id >= m.hwm {
				return fmt.Errorf("freelist: free page %d is out of range", id)
			}
		}
	}
	return nil
}
