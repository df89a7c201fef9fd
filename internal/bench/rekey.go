package bench

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"fmt"
	"io"
	"testing"
	"time"

	"github.com/groupvpn/groupvpn/internal/gdoi"
	"github.com/groupvpn/groupvpn/internal/lab"
	"github.com/groupvpn/groupvpn/isakmp"
)

// RekeyReport is the result of the unicast rekey scenario.
type RekeyReport struct {
	Members   int
	Elapsed   time.Duration // from the rekey's start to the last acknowledgement
	Acked     int
	SignSeal  time.Duration // building one rekey: sign (ECDSA P-256) and encrypt
	PerMember time.Duration // Elapsed / Members
}

// Rekey registers members GMs with a KS in this process (the lab's
// configuration, unicast rekeys with RFC 8263 acknowledgements), then
// sends one rekey and measures until the last GM's acknowledgement has
// reached the KS. Beside it: the time to build one rekey (sign and
// encrypt), measured in the same run.
func Rekey(ctx context.Context, members int, port uint16) (*RekeyReport, error) {
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	kek := gdoi.KEK{Key: make([]byte, 32)}
	msg := RekeyMessage()
	r := &gdoi.Rekey{Seq: 1, SA: msg.Payloads[1].(*isakmp.GroupSA), KD: msg.Payloads[2].(*isakmp.KD)}
	sign := testing.Benchmark(func(b *testing.B) {
		for i := 0; i < b.N; i++ {
			if _, err := gdoi.SealPush(r, kek, key, isakmp.SigAlgECDSA256, rand.Reader); err != nil {
				b.Fatal(err)
			}
		}
	})
	l, err := registeredLab(ctx, lab.Options{Members: members, Port: port})
	if err != nil {
		return nil, err
	}
	defer l.Close()
	n := l.KS.Node
	start := time.Now()
	if err := n.Rekey(ctx, "LAB"); err != nil {
		return nil, err
	}
	for {
		left, err := n.RekeysInFlight(ctx)
		if err != nil {
			return nil, err
		}
		if left == 0 {
			break
		}
		time.Sleep(time.Millisecond)
	}
	el := time.Since(start)
	s, err := n.State(ctx)
	if err != nil {
		return nil, err
	}
	acked := 0
	for _, m := range s.KS[0].Members {
		if m.AcksReceived > 0 {
			acked++
		}
	}
	return &RekeyReport{Members: members, Elapsed: el, Acked: acked, SignSeal: time.Duration(sign.NsPerOp()),
		PerMember: el / time.Duration(members)}, nil
}

// Print writes the report.
func (r *RekeyReport) Print(w io.Writer) {
	fmt.Fprintf(w, "scenario rekey: one unicast rekey to %d GMs over loopback UDP, until the last RFC 8263 ACK\n", r.Members)
	fmt.Fprintf(w, "  %-44s %12s\n", "rekey start to last acknowledgement", r.Elapsed.Round(time.Microsecond))
	fmt.Fprintf(w, "  %-44s %12d\n", "members that acknowledged", r.Acked)
	fmt.Fprintf(w, "  %-44s %12s\n", "per member", r.PerMember.Round(time.Nanosecond))
	fmt.Fprintf(w, "  %-44s %12s\n", "ceiling: build one rekey (sign + encrypt)", r.SignSeal.Round(time.Microsecond))
	fmt.Fprintf(w, "  %-44s %12.1f\n", "elapsed / one rekey build", float64(r.Elapsed)/float64(r.SignSeal))
	fmt.Fprintln(w, "  (the GMs run in the same process: each decrypts, verifies a signature and answers an ACK on the same CPU)")
}
