package store

import (
	"encoding/json"
	"strconv"
	"time"
)

// encodeMember returns m's stored JSON followed by room for the record's
// tag: the octets json.Marshal(m) makes (a record's tag covers them, and a
// save compares them with the stored ones), appended by hand. A registration
// storm saves every member it adds, and encoding/json's reflection was a
// quarter of the periodic save (issue 18). What the fast path does not
// cover exactly (a string json escapes, a time json refuses) goes through
// encoding/json; TestEncodeMemberIsJSONMarshal and FuzzEncodeMember hold the
// two to the same octets.
func encodeMember(m *MemberState) ([]byte, error) {
	return appendMember(make([]byte, 0, memberRoom(m)), m)
}

// memberRoom is room enough for m's record and its tag: every field at
// its longest, the strings unescaped (~350 octets).
func memberRoom(m *MemberState) int {
	return 384 + len(m.Address.Zone()) + len(m.Identity) + len(m.Version) +
		11*(len(m.SenderIDs)+len(m.PrevSenderIDs)) + tagSize
}

// appendMember appends encodeMember's octets to b (a delta's records
// share a buffer: putDelta).
func appendMember(b []byte, m *MemberState) ([]byte, error) {
	b0 := b
	fallback := func() ([]byte, error) {
		v, err := json.Marshal(m) // its error: a year json cannot write
		return append(b0, v...), err
	}
	b = append(b, `{"address":`...)
	var ab [64]byte // an address as json writes it: MarshalText, "" for none
	b = appendJSONString(b, m.Address.AppendTo(ab[:0]))
	if m.Identity != "" {
		b = append(b, `,"identity":`...)
		b = appendJSONString(b, m.Identity)
	}
	if m.Version != "" {
		b = append(b, `,"version":`...)
		b = appendJSONString(b, m.Version)
	}
	var ok bool
	b = append(b, `,"registered":`...)
	if b, ok = appendJSONTime(b, m.Registered); !ok {
		return fallback()
	}
	b = append(b, `,"last_register":`...)
	if b, ok = appendJSONTime(b, m.LastRegister); !ok {
		return fallback()
	}
	b = append(b, `,"registrations":`...)
	b = strconv.AppendInt(b, int64(m.Registrations), 10)
	if len(m.SenderIDs) > 0 {
		b = append(b, `,"sender_ids":`...)
		b = appendJSONUints(b, m.SenderIDs)
	}
	if m.SIDBits != 0 {
		b = append(b, `,"sid_bits":`...)
		b = strconv.AppendUint(b, uint64(m.SIDBits), 10)
	}
	if len(m.PrevSenderIDs) > 0 {
		b = append(b, `,"prev_sender_ids":`...)
		b = appendJSONUints(b, m.PrevSenderIDs)
	}
	if m.MissedRekeys != 0 {
		b = append(b, `,"missed_rekeys":`...)
		b = strconv.AppendInt(b, int64(m.MissedRekeys), 10)
	}
	if m.Port != 0 {
		b = append(b, `,"port":`...)
		b = strconv.AppendUint(b, uint64(m.Port), 10)
	}
	if m.Removed {
		b = append(b, `,"removed":true`...)
	}
	return append(b, '}'), nil
}

// appendJSONString appends s as encoding/json writes a string: plain
// printable ASCII as it is, anything json escapes (quotes, backslashes,
// controls, <, >, &, non-ASCII) through encoding/json itself.
func appendJSONString[S string | []byte](b []byte, s S) []byte {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c > 0x7e || c == '"' || c == '\\' || c == '<' || c == '>' || c == '&' {
			q, _ := json.Marshal(string(s)) // a string always encodes
			return append(b, q...)
		}
	}
	b = append(b, '"')
	b = append(b, s...)
	return append(b, '"')
}

// appendJSONTime appends t as time.Time's MarshalJSON does (RFC 3339 with
// nanoseconds, quoted), or reports false where MarshalJSON fails.
func appendJSONTime(b []byte, t time.Time) ([]byte, bool) {
	if y := t.Year(); y < 0 || y > 9999 {
		return b, false
	}
	if _, off := t.Zone(); off <= -24*3600 || off >= 24*3600 {
		return b, false
	}
	b = append(b, '"')
	b = t.AppendFormat(b, time.RFC3339Nano)
	return append(b, '"'), true
}

func appendJSONUints(b []byte, v []uint32) []byte {
	b = append(b, '[')
	for i, x := range v {
		if i > 0 {
			b = append(b, ',')
		}
		b = strconv.AppendUint(b, uint64(x), 10)
	}
	return append(b, ']')
}
