package gm

import "github.com/groupvpn/groupvpn/isakmp"

// SeqFilter is the replay filter of one group's rekeys: a GROUPKEY-PUSH is
// accepted only if its sequence number is above the last one accepted
// under the same KEK (RFC 6407 §4.4.1, §3.3). It is not a sliding window
// (internal/replay is, for ESP): a rekey older than the newest one
// accepted would install older keys, so order matters and nothing below
// the highest number passes. The last datagram accepted is remembered by
// digest, so that its retransmission (the KS did not get the ACK) is
// answered without verifying its signature again.
//
// The filter keeps the numbers of the last maxKEKs KEKs only: a GM holds
// one KEK per group, and a push under a KEK it no longer holds is dropped
// before the filter is consulted.
type SeqFilter struct {
	keks   []kekSeq // oldest first
	digest [32]byte // of the last push accepted
}

type kekSeq struct {
	spi [isakmp.KEKSPILen]byte
	seq uint32
}

const maxKEKs = 4

// SeqVerdict is what Check says of a sequence number.
type SeqVerdict int

const (
	// SeqNew: above the last accepted; verify the push, then Accept it.
	SeqNew SeqVerdict = iota
	// SeqRetransmit: the very datagram last accepted, again.
	SeqRetransmit
	// SeqDuplicate: the last number accepted, other octets (a KS that
	// rebuilt the same rekey, after a restart): acknowledge, do not apply.
	SeqDuplicate
	// SeqStale: below the last accepted, or 0 (a replay).
	SeqStale
)

func (f *SeqFilter) find(spi [isakmp.KEKSPILen]byte) *kekSeq {
	for i := range f.keks {
		if f.keks[i].spi == spi {
			return &f.keks[i]
		}
	}
	return nil
}

// Last is the last sequence number accepted under the KEK spi (0: none).
func (f *SeqFilter) Last(spi [isakmp.KEKSPILen]byte) uint32 {
	if k := f.find(spi); k != nil {
		return k.seq
	}
	return 0
}

// Max is the highest sequence number accepted under any KEK.
func (f *SeqFilter) Max() uint32 {
	var m uint32
	for _, k := range f.keks {
		m = max(m, k.seq)
	}
	return m
}

// Check classifies seq, received under the KEK spi in a datagram of the
// given digest. It changes nothing.
func (f *SeqFilter) Check(spi [isakmp.KEKSPILen]byte, seq uint32, digest [32]byte) SeqVerdict {
	last := f.Last(spi)
	switch {
	case seq == last && last != 0 && digest == f.digest:
		return SeqRetransmit
	case seq == last && last != 0:
		return SeqDuplicate
	case seq <= last:
		return SeqStale
	}
	return SeqNew
}

// Accept records a verified push: seq is the last number under spi.
func (f *SeqFilter) Accept(spi [isakmp.KEKSPILen]byte, seq uint32, digest [32]byte) {
	f.set(spi, seq)
	f.digest = digest
}

// Advance raises the last number under spi to seq if it is higher: the
// SEQ of a registration (§3.3: stale if a push under this KEK was already
// accepted).
func (f *SeqFilter) Advance(spi [isakmp.KEKSPILen]byte, seq uint32) {
	f.set(spi, max(f.Last(spi), seq))
}

// Reset starts a new KEK at 0.
func (f *SeqFilter) Reset(spi [isakmp.KEKSPILen]byte) { f.set(spi, 0) }

func (f *SeqFilter) set(spi [isakmp.KEKSPILen]byte, seq uint32) {
	if k := f.find(spi); k != nil {
		k.seq = seq
		return
	}
	if len(f.keks) == maxKEKs {
		f.keks = append(f.keks[:0], f.keks[1:]...)
	}
	f.keks = append(f.keks, kekSeq{spi: spi, seq: seq})
}
