package show

import (
	"fmt"
	"strings"
	"time"

	"github.com/groupvpn/groupvpn/internal/ike"
	"github.com/groupvpn/groupvpn/internal/node"
)

// ISAKMPSADetail renders `show crypto isakmp sa detail`: IOS's table of
// the phase-1 SAs (Cap. D: the peer announced dead peer detection), each
// followed by the state of its dead peer detection (crypto isakmp
// keepalive, issue 14 item 2).
func ISAKMPSADetail(s node.Snapshot) (string, any) {
	var b strings.Builder
	WriteISAKMPSA(&b, s, true)
	return b.String(), ISAKMPSADetailView(s)
}

func iosHash(h ike.HashAlg) string {
	if h == ike.SHA1 {
		return "sha"
	}
	return h.String()
}

func iosAuth(a ike.AuthMethod) string {
	switch a {
	case ike.AuthPSK:
		return "psk"
	case ike.AuthRSA:
		return "rsig"
	}
	return "ecdsa"
}

// hms is IOS's remaining lifetime, hh:mm:ss.
func hms(d time.Duration) string {
	t := secs(d)
	return fmt.Sprintf("%02d:%02d:%02d", t/3600, t/60%60, t%60)
}

// dpdLine says what the SA's dead peer detection does.
func dpdLine(i ike.Info, now time.Time) string {
	d := i.DPD
	switch {
	case !i.PeerDPD:
		return "DPD: the peer did not announce it"
	case !d.Timer.Enabled():
		return "DPD: R-U-THERE answered; none sent (no crypto isakmp keepalive)"
	case d.Next.IsZero():
		return fmt.Sprintf("DPD: %s, not probed (a key server does not probe its members on demand)", d.Timer.Mode())
	}
	retry, tries := d.Timer.Retry, d.Timer.Tries
	if retry <= 0 {
		retry = ike.DefaultDPDRetry
	}
	if tries <= 0 {
		tries = ike.DefaultDPDTries
	}
	head := fmt.Sprintf("DPD: %s, keepalive %d s, retry %d s", d.Timer.Mode(), secs(d.Timer.Interval), secs(retry))
	if d.Outstanding > 0 {
		return fmt.Sprintf("%s; R-U-THERE %d of %d unanswered, next in %d s", head, d.Outstanding, tries, secs(d.Next.Sub(now)))
	}
	return fmt.Sprintf("%s; last alive %d s ago, next R-U-THERE in %d s", head, secs(now.Sub(d.LastAlive)), secs(d.Next.Sub(now)))
}
