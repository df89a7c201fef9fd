// Package replay is the anti-replay sliding window of one ESP sender
// (RFC 4303 §3.4.3): a bitmap over the last Window sequence numbers kept as
// a ring of 64-bit blocks, so that moving the window forward clears whole
// blocks instead of shifting bits (the layout of RFC 6479 §2.3).
//
// A receiver checks a sequence number with Check before it spends work on
// the integrity check and records it with Accept only once the packet
// authenticated, so that a forged packet cannot move the window.
package replay

const (
	blockBits  = 64
	ringBlocks = 32 // 2048 bits: the window plus one block of slack
	// MaxWindow is the largest window a Filter keeps: the ring less the
	// block that is being reused as the window moves.
	MaxWindow = (ringBlocks - 1) * blockBits // 1984
	// DefaultWindow is the window of a zero Filter.
	DefaultWindow = 1024
)

// Filter is the replay state of one sender. The zero value is an empty
// filter with DefaultWindow. A Filter is not safe for concurrent use.
type Filter struct {
	top    uint64 // highest sequence number accepted; 0: none yet
	window uint64 // 0 means DefaultWindow
	ring   [ringBlocks]uint64
}

// New returns an empty filter keeping the last window sequence numbers,
// window clamped to 1..MaxWindow (0 or less: DefaultWindow).
func New(window int) Filter {
	var f Filter
	f.SetWindow(window)
	return f
}

// SetWindow sets the window size (clamped as for New) and empties f.
func (f *Filter) SetWindow(window int) {
	*f = Filter{}
	switch {
	case window <= 0:
		f.window = DefaultWindow
	case window > MaxWindow:
		f.window = MaxWindow
	default:
		f.window = uint64(window)
	}
}

// Window is the number of sequence numbers f remembers.
func (f *Filter) Window() int {
	if f.window == 0 {
		return DefaultWindow
	}
	return int(f.window)
}

// Top is the highest sequence number accepted so far (0 before any).
func (f *Filter) Top() uint64 { return f.top }

// Check reports whether seq would be accepted now: it is not 0 (ESP never
// sends 0, RFC 4303 §3.3.3), not older than the window, and not seen. It
// does not change f.
func (f *Filter) Check(seq uint64) bool {
	if seq == 0 {
		return false
	}
	if seq > f.top {
		return true
	}
	if f.top-seq >= uint64(f.Window()) {
		return false
	}
	return f.ring[(seq/blockBits)%ringBlocks]&(1<<(seq%blockBits)) == 0
}

// Accept records seq and reports whether it was new (Check's verdict):
// a seq beyond the top moves the window forward; a duplicate or a seq
// older than the window is refused and leaves f unchanged.
func (f *Filter) Accept(seq uint64) bool {
	if !f.Check(seq) {
		return false
	}
	if seq > f.top {
		cur, next := f.top/blockBits, seq/blockBits
		n := next - cur
		if n > ringBlocks {
			n = ringBlocks
		}
		for i := uint64(1); i <= n; i++ {
			f.ring[(cur+i)%ringBlocks] = 0
		}
		f.top = seq
	}
	f.ring[(seq/blockBits)%ringBlocks] |= 1 << (seq % blockBits)
	return true
}
