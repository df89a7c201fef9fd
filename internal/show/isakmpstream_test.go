package show

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/netip"
	"strings"
	"testing"

	"github.com/groupvpn/groupvpn/internal/ctl"
	"github.com/groupvpn/groupvpn/internal/ike"
	"github.com/groupvpn/groupvpn/internal/node"
	"github.com/groupvpn/groupvpn/internal/show/jsoncheck"
)

// withPhase1 is jsonSnapshot with n phase-1 SAs.
func withPhase1(n int) node.Snapshot {
	s := jsonSnapshot()
	sa := s.Phase1[0]
	s.Phase1 = make([]ike.Info, n)
	for i := range s.Phase1 {
		s.Phase1[i] = sa
		s.Phase1[i].Peer = netip.AddrPortFrom(netip.AddrFrom4([4]byte{10, 1, byte(i >> 8), byte(i)}), 848)
	}
	s.Phase1Count = n
	return s
}

// proves: N1 (issue 18, review: `show crypto isakmp sa [detail]` over
// 100,000 phase-1 SAs is streamed SA by SA, as the members are) — the
// streamed text is the command's text, the streamed `| json` is byte for
// byte the document of its view and passes jsoncheck, for 0, 1 and 2,000
// SAs, and through the control server `| count` counts every SA's line.
func TestISAKMPSAStreamed(t *testing.T) {
	for _, n := range []int{0, 1, 2000} {
		s := withPhase1(n)
		for _, detail := range []bool{false, true} {
			var text string
			var view any
			if detail {
				text, view = ISAKMPSADetail(s)
			} else {
				text, view = ISAKMPSA(s)
			}
			var b bytes.Buffer
			if err := WriteISAKMPSA(&b, s, detail); err != nil || b.String() != text {
				t.Fatalf("%d SAs, detail %v: streamed text differs (%v)", n, detail, err)
			}
			if got := strings.Count(text, "ACTIVE"); got != n {
				t.Fatalf("%d SAs, detail %v: %d rows", n, detail, got)
			}
			want := indentJSON(t, view)
			b.Reset()
			if err := WriteISAKMPSAJSON(&b, s, detail); err != nil || !bytes.Equal(bytes.TrimSpace(b.Bytes()), bytes.TrimSpace(want)) {
				t.Fatalf("%d SAs, detail %v: streamed JSON differs (%v):\n%s\nwant\n%s", n, detail, err, b.String(), want)
			}
			for _, e := range jsoncheck.Check(b.Bytes(), Schema) {
				t.Error(e)
			}
		}
	}
	s := withPhase1(2000)
	srv := ctl.NewServer(nil)
	srv.HandleReadOnly("show crypto isakmp sa", "phase-1 SAs", func(context.Context, *ctl.Request) (*ctl.Reply, error) {
		return &ctl.Reply{
			Stream:     func(w io.Writer) error { return WriteISAKMPSA(w, s, false) },
			StreamJSON: func(w io.Writer) error { return WriteISAKMPSAJSON(w, s, false) },
		}, nil
	})
	if r := srv.Exec(context.Background(), "show crypto isakmp sa | include ACTIVE | count"); !r.OK || !strings.Contains(r.Text, fmt.Sprint(2000)) {
		t.Fatalf("| count: %+v", r)
	}
	if r := srv.Exec(context.Background(), "show crypto isakmp sa | json"); !r.OK || strings.Count(r.Text, "\"conn_id\"") != 2000 {
		t.Fatalf("| json: %d SAs", strings.Count(r.Text, "\"conn_id\""))
	}
}
