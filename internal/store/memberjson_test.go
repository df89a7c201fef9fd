package store

import (
	"bytes"
	"encoding/json"
	"math/rand/v2"
	"net/netip"
	"testing"
	"time"
)

// checkEncodeMember fails unless encodeMember writes json.Marshal's octets
// (or fails where it fails) and leaves room for the tag.
func checkEncodeMember(t *testing.T, m MemberState) {
	t.Helper()
	want, werr := json.Marshal(&m)
	got, gerr := encodeMember(&m)
	if (werr == nil) != (gerr == nil) {
		t.Fatalf("%+v: json.Marshal error %v, encodeMember error %v", m, werr, gerr)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("%+v:\nencodeMember %s\njson.Marshal %s", m, got, want)
	}
	if werr == nil && cap(got)-len(got) < tagSize && plainJSON(m.Identity) && plainJSON(m.Version) {
		t.Errorf("%+v: %d octets of room for a %d-octet tag", m, cap(got)-len(got), tagSize)
	}
}

func plainJSON(s string) bool {
	q, _ := json.Marshal(s)
	return len(q) == len(s)+2
}

// proves: R2 (issue 18: the periodic save encodes each changed member by
// hand; what it stores, and what every record's tag covers, stays
// byte for byte what encoding/json wrote before, so stores written by
// either read and compare the same)
func TestEncodeMemberIsJSONMarshal(t *testing.T) {
	now := time.Date(2026, 12, 6, 21, 4, 5, 123456789, time.UTC)
	east := time.FixedZone("x", 9*3600+30*60)
	cases := []MemberState{
		{},
		{Address: netip.MustParseAddr("10.1.2.3"), Registered: now, LastRegister: now.Add(time.Hour), Registrations: 3},
		{Address: netip.MustParseAddr("2001:db8::1"), Identity: "gm1.example", Version: "groupvpn 0.9",
			Registered: now, LastRegister: now, Registrations: 1, SenderIDs: []uint32{1, 65535, 1 << 31},
			SIDBits: 24, PrevSenderIDs: []uint32{7 << 8}, MissedRekeys: 2, Port: 848, Removed: true},
		{Address: netip.MustParseAddr("fe80::1%eth0"), Identity: `a"b\c<d>&e`, Version: "\x00\x1f\x7f\t\n",
			Registered: now.In(east), LastRegister: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)},
		{Address: netip.MustParseAddr("192.0.2.1"), Identity: "caf\u00e9 \u2028 \xff\xfe", SenderIDs: []uint32{},
			Registered: now.Round(time.Second), Registrations: -1, MissedRekeys: -5},
		{Address: netip.MustParseAddr("192.0.2.2"), Registered: time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC)},
		{Address: netip.MustParseAddr("192.0.2.3"), Registered: time.Date(-1, 1, 1, 0, 0, 0, 0, time.UTC)},
		{Address: netip.MustParseAddr("192.0.2.4"), Registered: now.In(time.FixedZone("far", 24*3600))},
		{Address: netip.MustParseAddr("192.0.2.5"), Registered: now.In(time.FixedZone("far", -24*3600+1))},
	}
	for _, m := range cases {
		checkEncodeMember(t, m)
	}
	r := rand.New(rand.NewPCG(1, 2))
	for range 2000 {
		checkEncodeMember(t, randomMember(r))
	}
}

func randomMember(r *rand.Rand) MemberState {
	str := func() string {
		b := make([]byte, r.IntN(6))
		for i := range b {
			b[i] = byte(r.IntN(256))
			if r.IntN(3) > 0 {
				b[i] = 'a' + byte(r.IntN(26))
			}
		}
		return string(b)
	}
	ids := func() []uint32 {
		if r.IntN(3) == 0 {
			return nil
		}
		v := make([]uint32, r.IntN(4))
		for i := range v {
			v[i] = r.Uint32()
		}
		return v
	}
	var a [4]byte
	for i := range a {
		a[i] = byte(r.IntN(256))
	}
	return MemberState{Address: netip.AddrFrom4(a), Identity: str(), Version: str(),
		Registered:    time.Unix(r.Int64N(1<<35), r.Int64N(1e9)).UTC(),
		LastRegister:  time.Unix(r.Int64N(1<<35), 0).In(time.FixedZone("", (r.IntN(95)-47)*1800)),
		Registrations: r.IntN(1 << 20), SenderIDs: ids(), SIDBits: uint8(r.IntN(33)),
		PrevSenderIDs: ids(), MissedRekeys: r.IntN(3), Port: uint16(r.IntN(3) * 848), Removed: r.IntN(2) == 0}
}

// proves: R2 (issue 18) — encodeMember writes json.Marshal's octets for
// any member.
func FuzzEncodeMember(f *testing.F) {
	f.Add([]byte{10, 0, 0, 1}, "gm", "v1", int64(1796598245), int64(5), 3, uint32(9), uint8(16), int64(-3600), true)
	f.Add([]byte{0x20, 1, 0xd, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1}, "<&\">\u2028\xff", "\x00", int64(-62167219200), int64(0), -1, uint32(0), uint8(0), int64(86400), false)
	f.Fuzz(func(t *testing.T, addr []byte, id, ver string, sec, nsec int64, regs int, sid uint32, bits uint8, off int64, removed bool) {
		a, _ := netip.AddrFromSlice(addr)
		zone := time.FixedZone("z", int(off%(100*3600)))
		m := MemberState{Address: a, Identity: id, Version: ver,
			Registered: time.Unix(sec, nsec).In(zone), LastRegister: time.Unix(sec/2, 0).UTC(),
			Registrations: regs, SIDBits: bits, Port: uint16(sid), Removed: removed, MissedRekeys: regs / 3}
		if sid != 0 {
			m.SenderIDs = []uint32{sid, sid / 2}
		}
		checkEncodeMember(t, m)
	})
}

// BenchmarkEncodeMember is a registered member's record, by hand and
// by encoding/json (the former path), the same octets.
func BenchmarkEncodeMember(b *testing.B) {
	now := time.Date(2026, 12, 6, 21, 4, 5, 123456789, time.UTC)
	m := MemberState{Address: netip.MustParseAddr("127.64.1.2"), Identity: "127.64.1.2", Registered: now,
		LastRegister: now, Registrations: 1, SenderIDs: []uint32{4242}, Port: 848}
	b.Run("hand", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := encodeMember(&m); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("encoding-json", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := json.Marshal(&m); err != nil {
				b.Fatal(err)
			}
		}
	})
}
