package show

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/netip"
	"sort"
	"strconv"
	"time"

	"github.com/groupvpn/groupvpn/internal/ks"
	"github.com/groupvpn/groupvpn/internal/node"
)

// Streamed renderers (issue 18): `show crypto gdoi ks members` over
// 100,000 members is 2-3 million lines. These write the output member by
// member to w (the control server's filter pipeline), holding one
// member's text at a time, and stop at the first write error (the client
// went away or stopped the output).

// FindKSMember reports whether addr is registered in any KS group of s
// (the members of each group are sorted by address: a binary search).
func FindKSMember(s node.Snapshot, addr netip.Addr) bool {
	for _, g := range s.KS {
		if _, ok := memberIndex(g.Members, addr); ok {
			return true
		}
	}
	return false
}

func memberIndex(ms []ks.Member, addr netip.Addr) (int, bool) {
	i := sort.Search(len(ms), func(i int) bool { return !ms[i].Address.Less(addr) })
	return i, i < len(ms) && ms[i].Address == addr
}

// selectMembers is g's members, or only the one at addr (valid addr).
func selectMembers(ms []ks.Member, only netip.Addr) []ks.Member {
	if !only.IsValid() {
		return ms
	}
	if i, ok := memberIndex(ms, only); ok {
		return ms[i : i+1]
	}
	return nil
}

// WriteKSMembers writes `show crypto gdoi ks members` (only the member at
// addr when it is valid: `show crypto gdoi ks members A.B.C.D`).
func WriteKSMembers(w io.Writer, s node.Snapshot, only netip.Addr) error {
	buf := make([]byte, 0, 1024)
	buf = append(buf, "Group Member Information :\n"...)
	for _, g := range s.KS {
		ms := selectMembers(g.Members, only)
		if only.IsValid() && len(ms) == 0 {
			continue
		}
		buf = fmt.Appendf(buf, "\nNumber of rekeys sent for group %s : %d\n", g.Name, g.Rekeys)
		for i := range ms {
			buf = appendKSMember(buf, g, &ms[i])
			if len(buf) >= 16<<10 {
				if _, err := w.Write(buf); err != nil {
					return err
				}
				buf = buf[:0]
			}
		}
	}
	_, err := w.Write(buf)
	return err
}

func appendKSMember(b []byte, g ks.GroupSnapshot, m *ks.Member) []byte {
	// As fmt would print it (TestKSMembersStreamed compares), without its
	// allocations: 1.2 million lines for 100,000 members.
	b = append(b, "\nGroup Member ID    : "...)
	start := len(b)
	b = m.Address.AppendTo(b)
	for len(b)-start < 15 {
		b = append(b, ' ')
	}
	b = append(b, " GM Version: "...)
	if m.Version.IsZero() {
		b = append(b, "unknown"...)
	} else {
		b = append(b, m.Version.String()...)
	}
	b = appendUint(append(b, "\n Group ID          : "...), uint64(g.ID))
	b = append(append(b, "\n Group Name        : "...), g.Name...)
	b = append(append(b, "\n GM Identity       : "...), m.Identity...)
	times := " times)\n"
	if m.Registrations == 1 {
		times = " time)\n"
	}
	b = append(b, "\n Registered        : "...)
	b = m.Registered.UTC().AppendFormat(b, time.RFC3339)
	b = append(appendInt(append(b, " ("...), m.Registrations), times...)
	b = append(b, " Last registration : "...)
	b = m.LastRegister.UTC().AppendFormat(b, time.RFC3339)
	b = append(b, '\n')
	if len(m.SenderIDs) > 0 {
		b = append(b, " Sender IDs        : ["...)
		for i, id := range m.SenderIDs {
			if i > 0 {
				b = append(b, ' ')
			}
			b = appendUint(b, uint64(id))
		}
		b = append(b, "]\n"...)
	}
	if g.Unicast {
		// Per member only with unicast rekeys: a multicast rekey is one
		// datagram to the group (the count above).
		b = append(appendInt(append(b, " Rekeys sent       : "...), m.RekeysSent), '\n')
		b = append(appendInt(append(b, " Rekeys retries    : "...), m.RekeyRetries), '\n')
	}
	b = append(appendInt(append(b, " Rekey Acks Rcvd   : "...), m.AcksReceived), '\n')
	b = append(appendInt(append(b, " Rekey Acks missed : "...), m.AcksMissed), '\n')
	if m.Removed {
		b = append(b, " Rekey list        : removed (no ACK for consecutive rekeys; re-registers)\n"...)
	}
	return b
}

func appendInt(b []byte, v int) []byte     { return strconv.AppendInt(b, int64(v), 10) }
func appendUint(b []byte, v uint64) []byte { return strconv.AppendUint(b, v, 10) }

func ksMemberJSON(g ks.GroupSnapshot, m *ks.Member) KSMemberJSON {
	mv := KSMemberJSON{Address: addrString(m.Address), Port: m.Port, Identity: m.Identity, Version: versionString(m.Version),
		RegisteredAt: jsonTime(m.Registered), LastRegistrationAt: jsonTime(m.LastRegister), Registrations: m.Registrations,
		SenderIDs: m.SenderIDs, RekeyAcksReceived: m.AcksReceived, RekeyAcksMissed: m.AcksMissed,
		RekeyAcksMissedConsecutive: m.Missed, LastAckSequence: m.LastAckSeq, Removed: m.Removed}
	if g.Unicast {
		sent, retries := m.RekeysSent, m.RekeyRetries
		mv.RekeysSent, mv.RekeyRetries = &sent, &retries
	}
	return mv
}

// jsonIndented encodes v as the control server shows `| json` (indented
// by two spaces, '<' '>' '&' as themselves), each line after the first
// starting with prefix, without the final newline.
type jsonIndented struct {
	buf bytes.Buffer
	enc *json.Encoder
	pfx string
}

func newJSONIndented(prefix string) *jsonIndented {
	j := &jsonIndented{pfx: prefix}
	j.enc = json.NewEncoder(&j.buf)
	j.enc.SetEscapeHTML(false)
	j.enc.SetIndent(prefix, "  ")
	return j
}

func (j *jsonIndented) encode(v any) ([]byte, error) {
	j.buf.Reset()
	if err := j.enc.Encode(v); err != nil {
		return nil, err
	}
	return bytes.TrimSuffix(j.buf.Bytes(), []byte("\n")), nil
}

// WriteKSMembersJSON writes `show crypto gdoi ks members | json`: the
// document json.MarshalIndent would make of KSMembersView (byte for byte),
// one member encoded at a time.
func WriteKSMembersJSON(w io.Writer, s node.Snapshot, only netip.Addr) error {
	var groups []ks.GroupSnapshot
	for _, g := range s.KS {
		if !only.IsValid() || len(selectMembers(g.Members, only)) > 0 {
			groups = append(groups, g)
		}
	}
	top := newJSONIndented("")
	head, err := top.encode(KSMembersJSON{Header: NewHeader("show crypto gdoi ks members", s.Now)})
	if err != nil {
		return err
	}
	if len(groups) == 0 {
		_, err := w.Write(append(head, '\n'))
		return err
	}
	out := make([]byte, 0, 32<<10)
	out = append(out, bytes.TrimSuffix(head, []byte("\n}"))...)
	out = append(out, ",\n  \"groups\": [\n"...)
	genc, menc := newJSONIndented("    "), newJSONIndented("        ")
	for gi, g := range groups {
		gb, err := genc.encode(KSMembersGroupJSON{Name: g.Name, Identity: g.ID, RekeyTransport: rekeyTransport(g.Unicast), RekeysSent: g.Rekeys})
		if err != nil {
			return err
		}
		out = append(out, "    "...)
		ms := selectMembers(g.Members, only)
		if len(ms) == 0 {
			out = append(out, gb...)
		} else {
			out = append(out, bytes.TrimSuffix(gb, []byte("\n    }"))...)
			out = append(out, ",\n      \"members\": [\n"...)
			for i := range ms {
				mb, err := menc.encode(ksMemberJSON(g, &ms[i]))
				if err != nil {
					return err
				}
				out = append(out, "        "...)
				out = append(out, mb...)
				if i < len(ms)-1 {
					out = append(out, ',')
				}
				out = append(out, '\n')
				if len(out) >= 16<<10 {
					if _, err := w.Write(out); err != nil {
						return err
					}
					out = out[:0]
				}
			}
			out = append(out, "      ]\n    }"...)
		}
		if gi < len(groups)-1 {
			out = append(out, ',')
		}
		out = append(out, '\n')
	}
	out = append(out, "  ]\n}\n"...)
	_, err = w.Write(out)
	return err
}
