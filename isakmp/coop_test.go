package isakmp

import (
	"bytes"
	"errors"
	"net/netip"
	"runtime"
	"strings"
	"testing"
	"unsafe"

	"github.com/groupvpn/groupvpn/internal/coop"
	"github.com/groupvpn/groupvpn/internal/version"
)

func goldenCOOP() *COOP {
	return &COOP{Version: SWVersion{1, 0, 2}, Role: RolePrimary, Priority: 100,
		Address: mustAddr("192.0.2.1"), PeriodMS: 10_000, DeadMS: 30_000, RekeySeq: 8, MembersGen: 42}
}

func goldenMembersFull() *Members {
	return &Members{Kind: MembersFull, Gen: 42, Part: 0, Parts: 2, Total: 3, Entries: []Member{
		{Op: MemberAdd, Addr: mustAddr("192.0.2.10"), Version: SWVersion{1, 0, 2}},
		{Op: MemberAdd, Addr: mustAddr("192.0.2.11"), Version: SWVersion{}},
	}}
}

func goldenMembersDelta() *Members {
	return &Members{Kind: MembersDelta, BaseGen: 42, Gen: 44, Part: 0, Parts: 1, Total: 3, Entries: []Member{
		{Op: MemberRemove, Addr: mustAddr("192.0.2.11")},
		{Op: MemberAdd, Addr: mustAddr("2001:db8::10"), Version: SWVersion{1, 0, 1}},
	}}
}

// coopPayloadGoldens are the COOP and MEMBERS payloads with the octets
// docs/wire.md gives for them, written by hand.
func coopPayloadGoldens() []payloadGolden {
	v6 := goldenCOOP()
	v6.Role, v6.Flags, v6.Priority, v6.Address = RoleElecting, COOPFullSyncRequest|COOPReplyRequest, 1, mustAddr("2001:db8::1")
	v6.PeriodMS, v6.DeadMS, v6.RekeySeq, v6.MembersGen, v6.State = 500, 1500, 0, 0, []byte{0xab, 0xcd}
	v6.Version = SWVersion{1, 0, 1}
	return []payloadGolden{
		{"COOP primary IPv4", goldenCOOP(), `
			00 00 0028
			01 01 00 02          # format 1, version 1.0.2
			02 00 64 01          # PRIMARY, no flags, priority 100, ID_IPV4_ADDR
			00002710             # announcement period 10,000 ms
			00007530             # dead interval 30,000 ms
			00000008             # rekey sequence 8
			000000000000002a     # member list generation 42
			0000 0000            # no state, RESERVED
			c0000201             # KS 192.0.2.1`},
		{"COOP electing IPv6 with state", v6, `
			00 00 0036
			01 01 00 01          # format 1, version 1.0.1
			01 03 01 05          # ELECTING, FULL-SYNC-REQUEST | REPLY-REQUEST, priority 1, ID_IPV6_ADDR
			000001f4 000005dc    # 500 ms, 1,500 ms
			00000000 0000000000000000
			0002 0000            # state 2 octets
			20010db8000000000000000000000001
			abcd`},
		{"MEMBERS full part", goldenMembersFull(), `
			00 00 0032
			01 00 0002           # FULL, RESERVED, 2 entries
			0000000000000000     # base generation 0
			000000000000002a     # generation 42
			0000 0002            # part 0 of 2
			00000003             # 3 members in all
			01 01 010002 c000020a   # ADD ID_IPV4_ADDR 1.0.2 192.0.2.10
			01 01 000000 c000020b   # ADD 192.0.2.11, no version known`},
		{"MEMBERS delta", goldenMembersDelta(), `
			00 00 003e
			02 00 0002           # DELTA, 2 entries
			000000000000002a     # from generation 42
			000000000000002c     # to 44
			0000 0001 00000003   # part 0 of 1, 3 members after it
			02 01 000000 c000020b                              # REMOVE 192.0.2.11
			01 05 010001 20010db8000000000000000000000010      # ADD 2001:db8::10 1.0.1`},
	}
}

// proves: C2, V3 (issue 16: ANN encoding) — the COOP payload carries the
// version major.minor.mini, role, priority, timers, rekey sequence and
// member generation, and the MEMBERS payload full and delta parts, in the
// octets docs/wire.md gives; both decode back to the same octets and refuse
// every truncation.
func TestCOOPPayloadGolden(t *testing.T) {
	for _, g := range coopPayloadGoldens() {
		t.Run(g.name, func(t *testing.T) { checkPayloadGolden(t, g) })
	}
	ps, err := ParsePayloads(PayloadCOOP, unhex(t, coopPayloadGoldens()[0].hex))
	if err != nil {
		t.Fatal(err)
	}
	if c := ps[0].(*COOP); c.Version != (SWVersion{1, 0, 2}) || c.Role != RolePrimary || c.Priority != 100 || c.Address != mustAddr("192.0.2.1") {
		t.Fatalf("decoded %+v", c)
	}
}

// proves: C2, C3 (issue 16: ANN bounds) — every field the reader bounds is
// refused one step past its bound, as malformed (or truncated where a
// length promises more than is present).
func TestCOOPBoundsRefused(t *testing.T) {
	coop := func(f func(*COOP)) []byte {
		c := goldenCOOP()
		f(c)
		b, err := MarshalPayload(c)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	members := func(f func(*Members)) []byte {
		m := goldenMembersDelta()
		f(m)
		b, err := MarshalPayload(m)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	set := func(b []byte, off int, v ...byte) []byte { copy(b[off:], v); return b }
	cases := []struct {
		name string
		t    PayloadType
		b    []byte
	}{
		{"format 2", PayloadCOOP, set(coop(func(*COOP) {}), 4, 2)},
		{"role 0", PayloadCOOP, coop(func(c *COOP) { c.Role = 0 })},
		{"role 4", PayloadCOOP, coop(func(c *COOP) { c.Role = 4 })},
		{"undefined flag", PayloadCOOP, coop(func(c *COOP) { c.Flags = 0x04 })},
		{"priority 0", PayloadCOOP, coop(func(c *COOP) { c.Priority = 0 })},
		{"period 0", PayloadCOOP, coop(func(c *COOP) { c.PeriodMS = 0 })},
		{"period above a day", PayloadCOOP, coop(func(c *COOP) { c.PeriodMS, c.DeadMS = MaxCOOPInterval+1, MaxCOOPInterval+1 })},
		{"dead below period", PayloadCOOP, coop(func(c *COOP) { c.DeadMS = c.PeriodMS - 1 })},
		{"dead above a day", PayloadCOOP, coop(func(c *COOP) { c.DeadMS = MaxCOOPInterval + 1 })},
		{"state too long", PayloadCOOP, coop(func(c *COOP) { c.State = make([]byte, MaxCOOPState+1) })},
		{"reserved", PayloadCOOP, set(coop(func(*COOP) {}), 4+30, 1)},
		{"address type FQDN", PayloadCOOP, set(coop(func(*COOP) {}), 4+7, byte(IDFQDN))},
		{"address unspecified", PayloadCOOP, coop(func(c *COOP) { c.Address = netip.Addr{} })},
		{"address 0.0.0.0", PayloadCOOP, coop(func(c *COOP) { c.Address = mustAddr("0.0.0.0") })},
		{"state length beyond payload", PayloadCOOP, set(coop(func(*COOP) {}), 4+28, 0, 1)},
		{"trailing octet", PayloadCOOP, append(set(coop(func(*COOP) {}), 3, 0x29), 0)},
		{"kind 0", PayloadMembers, members(func(m *Members) { m.Kind = 0 })},
		{"kind 3", PayloadMembers, members(func(m *Members) { m.Kind = 3 })},
		{"entry count above bound", PayloadMembers, set(members(func(*Members) {}), 6, 0x08, 0x01)},
		{"entry count beyond octets", PayloadMembers, set(members(func(*Members) {}), 6, 0x00, 0x03)},
		{"entry count below entries", PayloadMembers, set(members(func(*Members) {}), 6, 0x00, 0x01)},
		{"parts 0", PayloadMembers, members(func(m *Members) { m.Parts = 0 })},
		{"parts above bound", PayloadMembers, members(func(m *Members) { m.Parts, m.Part = MaxMemberParts+1, 0 })},
		{"part not below parts", PayloadMembers, members(func(m *Members) { m.Part = 1 })},
		{"total above bound", PayloadMembers, members(func(m *Members) { m.Total = MaxGroupMembers + 1 })},
		{"delta not forward", PayloadMembers, members(func(m *Members) { m.BaseGen = m.Gen })},
		{"full with base", PayloadMembers, members(func(m *Members) { m.Kind, m.Entries = MembersFull, m.Entries[1:] })},
		{"full with remove", PayloadMembers, members(func(m *Members) { m.Kind, m.BaseGen = MembersFull, 0 })},
		{"full larger than total", PayloadMembers, members(func(m *Members) {
			m.Kind, m.BaseGen, m.Total, m.Entries = MembersFull, 0, 0, m.Entries[1:]
		})},
		{"op 3", PayloadMembers, members(func(m *Members) { m.Entries[0].Op = 3 })},
		{"remove with version", PayloadMembers, members(func(m *Members) { m.Entries[0].Version = SWVersion{1, 0, 2} })},
		{"member address unspecified", PayloadMembers, members(func(m *Members) { m.Entries[1].Addr = mustAddr("::") })},
		{"member address type", PayloadMembers, set(members(func(*Members) {}), 4+28+1, byte(IDIPv4AddrSubnet))},
		{"reserved", PayloadMembers, set(members(func(*Members) {}), 5, 1)},
	}
	for _, c := range cases {
		_, err := ParsePayloads(c.t, c.b)
		if !errors.Is(err, ErrMalformed) && !errors.Is(err, ErrShort) {
			t.Errorf("%s: %x: err %v, want malformed or truncated", c.name, c.b, err)
		}
	}
}

// proves: C3 (issue 16: member lists of 100,000 GMs) — 100,000 members
// travel as 49 full parts (SplitMembers) of at most 2,048 entries, each within one ISAKMP
// payload, and reassemble to the same list; 2,048 IPv6 entries, the worst
// case, still fit one payload.
func TestMembers100000(t *testing.T) {
	all := make([]Member, 100_000)
	for i := range all {
		all[i] = Member{Op: MemberAdd, Addr: netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)}), Version: SWVersion{1, 0, byte(1 + i%2)}}
	}
	all[0].Addr = mustAddr("10.255.0.1") // 10.0.0.0 is a fine address but keep it obvious
	parts, err := SplitMembers(MembersFull, 0, 7, uint32(len(all)), all, MaxMemberEntries)
	if err != nil {
		t.Fatal(err)
	}
	if len(parts) != 49 {
		t.Fatalf("%d parts", len(parts))
	}
	var got []Member
	octets := 0
	for _, p := range parts {
		b, err := MarshalPayload(p)
		if err != nil {
			t.Fatal(err)
		}
		octets += len(b)
		ps, err := ParsePayloads(PayloadMembers, b)
		if err != nil {
			t.Fatal(err)
		}
		m := ps[0].(*Members)
		if m.Total != 100_000 || m.Parts != 49 {
			t.Fatalf("part %d: total %d parts %d", m.Part, m.Total, m.Parts)
		}
		got = append(got, m.Entries...)
	}
	if len(got) != len(all) {
		t.Fatalf("reassembled %d members", len(got))
	}
	for i := range all {
		if got[i] != all[i] {
			t.Fatalf("member %d: %+v, want %+v", i, got[i], all[i])
		}
	}
	t.Logf("100,000 IPv4 members: %d parts, %d payload octets", len(parts), octets)

	v6 := make([]Member, MaxMemberEntries)
	for i := range v6 {
		v6[i] = Member{Op: MemberAdd, Addr: netip.AddrFrom16([16]byte{0x20, 0x01, 0x0d, 0xb8, 14: byte(i >> 8), 15: byte(i)})}
	}
	v6[0].Addr = mustAddr("2001:db8::ffff")
	b, err := MarshalPayload(&Members{Kind: MembersFull, Parts: 1, Total: MaxMemberEntries, Entries: v6})
	if err != nil {
		t.Fatalf("2,048 IPv6 entries: %v", err)
	}
	if _, err := ParsePayloads(PayloadMembers, b); err != nil {
		t.Fatal(err)
	}
}

// proves: S1 (issue 16: ANN bounds) — a MEMBERS payload whose
// Entry Count promises the maximum with no entries present is refused
// before anything is allocated for them. The bound is on bytes, not on
// the number of allocations: error wrapping costs a few small ones (17
// normally, 20 under -race, 21 once in CI), while room for 2,048 entries
// would be over 40 KiB.
func TestMembersHostileCountDoesNotAllocate(t *testing.T) {
	b, err := MarshalPayload(&Members{Kind: MembersDelta, Gen: 1, Parts: 1})
	if err != nil {
		t.Fatal(err)
	}
	b[6], b[7] = 0x08, 0x00 // 2,048 entries, none present
	const runs = 100
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	for range runs {
		if _, err := ParsePayloads(PayloadMembers, b); !errors.Is(err, ErrMalformed) {
			t.Fatalf("err %v", err)
		}
	}
	runtime.ReadMemStats(&after)
	perRun := (after.TotalAlloc - before.TotalAlloc) / runs
	entries := uint64(MaxMemberEntries) * uint64(unsafe.Sizeof(Member{}))
	if perRun > entries/16 {
		t.Fatalf("%d bytes allocated per refused count (room for all entries is %d)", perRun, entries)
	}
}

// goldenANN is a complete COOP announcement with its payloads in the clear
// (on the wire they are encrypted under the KS-KS phase-1 SA, E flag set).
func goldenANN() *Message {
	h := hdr(ExchangeCOOPAnn, 0x0c00a001)
	return &Message{Header: h, Payloads: []Payload{
		&Hash{Data: bytes.Repeat([]byte{0x48}, 32)},
		&SEQ{Number: 17},
		GroupID(1234),
		goldenCOOP(),
		goldenGroupSA(),
		goldenKD(),
		goldenMembersFull(),
	}}
}

// proves: C2 (issue 16: ANN encoding) — a complete announcement (HASH, SEQ,
// ID, COOP, SA, KD, MEMBERS) marshals and parses back to the same octets
// under the COOP exchange, with the SA read as a GDOI SA (SAK, GAP, SAT),
// and refuses every truncation.
func TestANNMessageRoundTrip(t *testing.T) {
	m := goldenANN()
	b, err := m.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	got, err := ParseMessage(b)
	if err != nil {
		t.Fatal(err)
	}
	if got.Header.Exchange != ExchangeCOOPAnn || len(got.Payloads) != 7 {
		t.Fatalf("parsed %s with %d payloads", got.Header.Exchange, len(got.Payloads))
	}
	if _, ok := got.Payloads[4].(*GroupSA); !ok {
		t.Fatalf("SA parsed as %T, want a GDOI SA", got.Payloads[4])
	}
	again, err := got.Marshal()
	if err != nil || !bytes.Equal(again, b) {
		t.Fatalf("re-marshal differs (%v)", err)
	}
	for i := HeaderLen; i < len(b); i++ {
		if _, err := ParsePayloadsIn(ExchangeCOOPAnn, PayloadHash, b[HeaderLen:i]); err == nil {
			t.Fatalf("truncated to %d of %d octets: parsed", i, len(b))
		}
	}
}

// proves: C2, V3 (issue 16: ANN encoding) — tshark decodes a complete ANN
// and a periodic one (no keys) with the values we put in and no
// malformation or expert error: our private payloads as opaque data, the
// standard ones (SEQ, ID, SA with SAK, KD) field by field.
func TestTsharkDecodesCOOPAnn(t *testing.T) {
	periodic := &Message{Header: hdr(ExchangeCOOPAnn, 0x0c00a002), Payloads: []Payload{
		&Hash{Data: bytes.Repeat([]byte{0x48}, 32)}, &SEQ{Number: 18}, GroupID(1234), goldenCOOP(), goldenMembersDelta()}}
	msgs := []struct {
		name string
		m    *Message
		want []string
	}{
		{"ann-full", goldenANN(), []string{"Exchange type: Unknown (240)", "Sequence Number: 17", "ID_KEY_ID: 000004d2",
			"Payload: Private Use (192)", "Data Payload: 0101000202006401000027100000753000000008000000000000002a", // tshark shortens long data
			"Payload: Private Use (193)", "Number of Key Packets: 4",
			"SPI: 000102030405060708090a0b0c0d0e0f"}},
		{"ann-periodic", periodic, []string{"Sequence Number: 18", "Payload: Private Use (192)", "Payload: Private Use (193)"}},
	}
	var bs [][]byte
	for _, c := range msgs {
		b, err := c.m.Marshal()
		if err != nil {
			t.Fatal(err)
		}
		bs = append(bs, b)
	}
	for i, text := range tsharkFrames(t, bs) {
		c := msgs[i]
		for _, w := range c.want {
			if !strings.Contains(text, w) {
				t.Errorf("%s: tshark output lacks %q", c.name, w)
			}
		}
		if strings.Contains(text, "Malformed") || strings.Contains(text, "Expert Info") {
			t.Errorf("%s: tshark reports a malformation or expert error", c.name)
		}
		if t.Failed() {
			t.Logf("%s decoded as:\n%s", c.name, text)
		}
	}
}

func FuzzCOOP(f *testing.F) {
	for _, g := range coopPayloadGoldens() {
		if g.p.Type() == PayloadCOOP {
			f.Add(unhex(f, g.hex))
		}
	}
	f.Fuzz(func(t *testing.T, b []byte) { fuzzChain(t, PayloadCOOP, b) })
}

func FuzzMembers(f *testing.F) {
	for _, g := range coopPayloadGoldens() {
		if g.p.Type() == PayloadMembers {
			f.Add(unhex(f, g.hex))
		}
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		fuzzChain(t, PayloadMembers, b)
		if ps, err := ParsePayloads(PayloadMembers, b); err == nil {
			m := ps[0].(*Members)
			if len(m.Entries) > MaxMemberEntries || m.Part >= m.Parts || m.Total > MaxGroupMembers {
				t.Fatalf("accepted out-of-bounds %+v", m)
			}
		}
	})
}

func FuzzANN(f *testing.F) {
	b, err := goldenANN().Marshal()
	if err != nil {
		f.Fatal(err)
	}
	f.Add(b)
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := ParseMessage(b)
		if err != nil {
			return
		}
		out, err := m.Marshal()
		if err != nil || !bytes.Equal(out, b) {
			t.Fatalf("round trip differs (%v):\n in %x\nout %x", err, b, out)
		}
	})
}

// proves: V3 (issue 16: ANN encoding) — the wire's role values are the
// election core's (internal/coop), its 32-bit sequence number is the SEQ
// payload's, and SWVersion converts to and from version.Version, so the
// owner maps an Announcement to the COOP payload field by field.
func TestCOOPMatchesElectionCore(t *testing.T) {
	for _, r := range []struct {
		w COOPRole
		c coop.Role
	}{{RoleElecting, coop.Electing}, {RolePrimary, coop.Primary}, {RoleSecondary, coop.Secondary}} {
		if uint8(r.w) != uint8(r.c) {
			t.Errorf("role %s is %d on the wire, %s is %d in coop", r.w, r.w, r.c, r.c)
		}
	}
	a := coop.Announcement{Role: coop.Primary, Priority: 200, Version: version.Version{Major: 1, Minor: 0, Mini: 2},
		Seq: 0xfffffffe, ReplyRequest: true}
	seq := &SEQ{Number: a.Seq}
	p := &COOP{Version: SWVersion(a.Version), Role: COOPRole(a.Role), Priority: a.Priority,
		Flags: COOPReplyRequest, Address: mustAddr("192.0.2.9"), PeriodMS: 20_000, DeadMS: 60_000}
	b, err := AppendPayloads(nil, []Payload{seq, p})
	if err != nil {
		t.Fatal(err)
	}
	ps, err := ParsePayloads(PayloadSEQ, b)
	if err != nil {
		t.Fatal(err)
	}
	got := ps[1].(*COOP)
	back := coop.Announcement{Role: coop.Role(got.Role), Priority: got.Priority, Version: version.Version(got.Version),
		Seq: ps[0].(*SEQ).Number, ReplyRequest: got.Flags&COOPReplyRequest != 0}
	if back.Role != a.Role || back.Priority != a.Priority || back.Version != a.Version || back.Seq != a.Seq || !back.ReplyRequest {
		t.Fatalf("through the wire %+v, want %+v", back, a)
	}
}

// proves: C2 (issue 16: ANN encoding) — ParseANN takes exactly SEQ, ID,
// COOP [, SA, KD] [, MEMBERS] and gives back what ANN.Payloads wrote; any
// other order, a missing or extra payload, or SA without KD is refused.
func TestParseANNOrder(t *testing.T) {
	ps := goldenANN().Payloads[1:] // after the HASH
	a, err := ParseANN(ps)
	if err != nil {
		t.Fatal(err)
	}
	if a.Seq != 17 || a.COOP.Priority != 100 || a.SA == nil || a.KD == nil || a.Members == nil {
		t.Fatalf("parsed %+v", a)
	}
	again, err := a.Payloads()
	if err != nil {
		t.Fatal(err)
	}
	b1, _ := AppendPayloads(nil, ps)
	b2, _ := AppendPayloads(nil, again)
	if !bytes.Equal(b1, b2) {
		t.Fatal("Payloads differs from the parsed chain")
	}
	for _, ok := range [][]Payload{ps[:3], ps[:5], append(ps[:3:3], ps[5])} {
		if _, err := ParseANN(ok); err != nil {
			t.Errorf("%d payloads: %v", len(ok), err)
		}
	}
	seq, id, c, sa, kd, mem := ps[0], ps[1], ps[2], ps[3], ps[4], ps[5]
	for name, bad := range map[string][]Payload{
		"empty":              nil,
		"no SEQ":             {id, c},
		"ID not a key ID":    {seq, AddrID(mustAddr("192.0.2.1")), c},
		"no COOP":            {seq, id, sa, kd},
		"SA without KD":      {seq, id, c, sa},
		"SA, MEMBERS":        {seq, id, c, sa, mem},
		"KD alone":           {seq, id, c, kd},
		"MEMBERS before SA":  {seq, id, c, mem, sa, kd},
		"two MEMBERS":        {seq, id, c, mem, mem},
		"COOP twice":         {seq, id, c, c},
		"trailing SEQ":       {seq, id, c, sa, kd, mem, seq},
		"HASH left in front": goldenANN().Payloads,
	} {
		if _, err := ParseANN(bad); !errors.Is(err, ErrMalformed) {
			t.Errorf("%s: err %v, want malformed", name, err)
		}
	}
	for name, a := range map[string]*ANN{
		"no group":      {COOP: goldenCOOP()},
		"no COOP":       {Group: GroupID(1)},
		"SA without KD": {Group: GroupID(1), COOP: goldenCOOP(), SA: goldenGroupSA()},
		"KD without SA": {Group: GroupID(1), COOP: goldenCOOP(), KD: goldenKD()},
	} {
		if _, err := a.Payloads(); err == nil {
			t.Errorf("%s: Payloads built it", name)
		}
	}
}

// proves: C3 (issue 16: ANN bounds) — SplitMembers makes parts a reader
// accepts (one empty part for an empty list; the MTU-sized 140 entries a
// part for 100,000 members in 715 parts) and refuses what a reader would.
func TestSplitMembers(t *testing.T) {
	empty, err := SplitMembers(MembersDelta, 1, 2, 0, nil, 140)
	if err != nil || len(empty) != 1 || empty[0].Parts != 1 || len(empty[0].Entries) != 0 {
		t.Fatalf("empty delta: %v %+v", err, empty)
	}
	all := make([]Member, 100_000)
	for i := range all {
		all[i] = Member{Op: MemberAdd, Addr: netip.AddrFrom4([4]byte{10, 1 + byte(i>>16), byte(i >> 8), byte(i)})}
	}
	parts, err := SplitMembers(MembersFull, 0, 9, 100_000, all, 140)
	if err != nil || len(parts) != 715 {
		t.Fatalf("%v, %d parts", err, len(parts))
	}
	for _, p := range parts {
		b, err := MarshalPayload(p)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := ParsePayloads(PayloadMembers, b); err != nil {
			t.Fatalf("part %d: %v", p.Part, err)
		}
	}
	for name, f := range map[string]func() ([]*Members, error){
		"per 0":               func() ([]*Members, error) { return SplitMembers(MembersFull, 0, 1, 1, all[:1], 0) },
		"per above bound":     func() ([]*Members, error) { return SplitMembers(MembersFull, 0, 1, 1, all[:1], MaxMemberEntries+1) },
		"too many parts":      func() ([]*Members, error) { return SplitMembers(MembersFull, 0, 1, 100_000, all, 50) },
		"total above bound":   func() ([]*Members, error) { return SplitMembers(MembersDelta, 0, 1, MaxGroupMembers+1, nil, 1) },
		"full short of total": func() ([]*Members, error) { return SplitMembers(MembersFull, 0, 1, 3, all[:2], 10) },
	} {
		if _, err := f(); err == nil {
			t.Errorf("%s: split", name)
		}
	}
}
