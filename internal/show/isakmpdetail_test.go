package show

import (
	"strings"
	"testing"
	"time"

	"github.com/groupvpn/groupvpn/internal/ike"
)

// proves: O2 (issue 14 item 2: keepalive) — show crypto isakmp sa detail
// prints IOS's table (Cap. D when the peer announced DPD) and what each
// SA's dead peer detection does: a probe in progress, the next R-U-THERE,
// a responder not probed on demand, no keepalive configured.
func TestISAKMPSADetail(t *testing.T) {
	s := jsonSnapshot()
	now := s.Now
	on := ike.DPD{Interval: 10 * time.Second, Retry: 2 * time.Second}
	idle, notProbed, off, noPeer := s.Phase1[0], s.Phase1[0], s.Phase1[0], s.Phase1[0]
	idle.DPD = ike.DPDState{Timer: ike.DPD{Interval: 30 * time.Second, Retry: 5 * time.Second, Periodic: true}, Next: now.Add(12 * time.Second), LastAlive: now.Add(-18 * time.Second)}
	notProbed.DPD = ike.DPDState{Timer: on}
	off.DPD = ike.DPDState{}
	noPeer.PeerDPD = false
	s.Phase1 = append(s.Phase1, idle, notProbed, off, noPeer)
	text, _ := ISAKMPSADetail(s)
	for _, want := range []string{
		"C-id  Local           Remote          I-VRF  Status Encr Hash   Auth DH Lifetime Cap.\n",
		"1     192.0.2.10      192.0.2.1              ACTIVE aes  sha256 psk  19 23:00:00 D\n",
		"DPD: on-demand, keepalive 10 s, retry 2 s; R-U-THERE 1 of 5 unanswered, next in 2 s\n",
		"DPD: periodic, keepalive 30 s, retry 5 s; last alive 18 s ago, next R-U-THERE in 12 s\n",
		"DPD: on-demand, not probed",
		"DPD: R-U-THERE answered; none sent (no crypto isakmp keepalive)\n",
		"DPD: the peer did not announce it\n",
		"5     192.0.2.10      192.0.2.1              ACTIVE aes  sha256 psk  19 23:00:00 \n",
	} {
		if !strings.Contains(text, want) {
			t.Errorf("no %q in:\n%s", want, text)
		}
	}
}
