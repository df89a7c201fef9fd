package show

import (
	"bytes"
	"fmt"
	"io"

	"github.com/groupvpn/groupvpn/internal/node"
)

// `show crypto isakmp sa [detail]` streamed (issue 18: a key server with
// 100,000 members holds 100,000 phase-1 SAs): SA by SA, in chunks of
// 16 KiB, stopping at the first write error, as WriteKSMembers.

// WriteISAKMPSA writes `show crypto isakmp sa`, or with detail `show
// crypto isakmp sa detail`.
func WriteISAKMPSA(w io.Writer, s node.Snapshot, detail bool) error {
	buf := make([]byte, 0, 16<<10+512)
	if detail {
		buf = append(buf, "Codes: C - IKE configuration mode, D - Dead Peer Detection\n"+
			"       K - Keepalives, N - NAT-traversal\n"+
			"       T - cTCP encapsulation, X - IKE Extended Authentication\n"+
			"       psk - Preshared key, rsig - RSA signature\n"+
			"       renc - RSA encryption\n"+
			"IPv4 Crypto ISAKMP SA\n\n"+
			"C-id  Local           Remote          I-VRF  Status Encr Hash   Auth DH Lifetime Cap.\n\n"...)
	} else {
		buf = append(buf, "IPv4 Crypto ISAKMP SA\ndst             src             state          conn-id status\n"...)
	}
	for k, i := range s.Phase1 {
		if detail {
			capa := ""
			if i.PeerDPD {
				capa = "D"
			}
			buf = fmt.Appendf(buf, "%-5d %-15s %-15s %-6s %-6s %-4s %-6s %-4s %2d %s %s\n", k+1, i.Local.Addr(), i.Peer.Addr(), "",
				"ACTIVE", "aes", iosHash(i.Suite.Hash), iosAuth(i.Suite.Auth), i.Suite.Group, hms(i.Expires.Sub(s.Now)), capa)
			buf = fmt.Appendf(buf, "       Engine-id:Conn-id =  SW:%d\n", k+1)
			buf = fmt.Appendf(buf, "       %s\n", dpdLine(i, s.Now))
		} else {
			buf = fmt.Appendf(buf, "%-15s %-15s %-14s %7d ACTIVE\n", i.Peer.Addr(), i.Local.Addr(), "GDOI_IDLE", k+1)
		}
		if len(buf) >= 16<<10 {
			if _, err := w.Write(buf); err != nil {
				return err
			}
			buf = buf[:0]
		}
	}
	if detail {
		buf = append(buf, "\nIPv6 Crypto ISAKMP SA\n\n"...)
	}
	_, err := w.Write(buf)
	return err
}

// WriteISAKMPSAJSON writes `show crypto isakmp sa [detail] | json`: the
// document json.MarshalIndent would make of ISAKMPSAView (or
// ISAKMPSADetailView), one SA encoded at a time.
func WriteISAKMPSAJSON(w io.Writer, s node.Snapshot, detail bool) error {
	command := "show crypto isakmp sa"
	if detail {
		command += " detail"
	}
	head, err := newJSONIndented("").encode(ISAKMPSAsJSON{Header: NewHeader(command, s.Now)})
	if err != nil {
		return err
	}
	if len(s.Phase1) == 0 {
		_, err := w.Write(append(head, '\n'))
		return err
	}
	out := make([]byte, 0, 16<<10+2048)
	out = append(out, bytes.TrimSuffix(head, []byte("\n}"))...)
	out = append(out, ",\n  \"sas\": [\n"...)
	enc := newJSONIndented("    ")
	for i, p := range s.Phase1 {
		b, err := enc.encode(isakmpSAJSON(s, i, p))
		if err != nil {
			return err
		}
		out = append(append(out, "    "...), b...)
		if i < len(s.Phase1)-1 {
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
	out = append(out, "  ]\n}\n"...)
	_, err = w.Write(out)
	return err
}
