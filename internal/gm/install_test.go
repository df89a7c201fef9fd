package gm

import (
	"bytes"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/groupvpn/groupvpn/internal/gdoi"
	"github.com/groupvpn/groupvpn/internal/sadb"
	"github.com/groupvpn/groupvpn/isakmp"
)

var now = time.Date(2026, 11, 22, 12, 0, 0, 0, time.UTC)

func result(keyLen int, withSID bool) *gdoi.Result {
	sel := isakmp.Selector{Src: isakmp.PrefixEndpoint(netip.MustParsePrefix("10.0.0.0/8"), 0), Dst: isakmp.PrefixEndpoint(netip.MustParsePrefix("10.0.0.0/8"), 0)}
	kd := &isakmp.KD{Packets: []*isakmp.KeyPacket{{KDType: isakmp.KDTEK, SPI: []byte{0, 0, 1, 0},
		Attributes: isakmp.Attributes{isakmp.VarAttr(isakmp.TEKAlgorithmKey, bytes.Repeat([]byte{1}, keyLen))}}}}
	if withSID {
		kd.Packets = append(kd.Packets, &isakmp.KeyPacket{KDType: isakmp.KDSID, Attributes: isakmp.Attributes{
			isakmp.BasicAttr(isakmp.SIDNumberOfBits, 16), isakmp.VarAttr(isakmp.SIDValue, []byte{0, 0, 0, 9})}})
	}
	return &gdoi.Result{KD: kd, Policy: &isakmp.GroupSA{TEKs: []*isakmp.SAT{{Protocol: isakmp.TEKProtoESP, Selector: sel,
		TransformID: uint8(isakmp.ESPAESGCM16), SPI: 256, Attributes: isakmp.Attributes{
			isakmp.BasicAttr(isakmp.IPsecKeyLength, 256), isakmp.IntAttr(isakmp.IPsecSALifeDuration, 1800)}}}}}
}

// proves: groundwork — a GM installs only a complete, consistent policy:
// wrong key lengths or a counter-mode TEK without sender IDs are refused
// with a reason and nothing is installed.
func TestInstallChecksEverything(t *testing.T) {
	dp := sadb.NewMemory()
	inst, err := Install(dp, "G", 1, result(36, true), now)
	if err != nil {
		t.Fatal(err)
	}
	if len(dp.TEKs()) != 1 || inst.Earliest != now.Add(1800*time.Second) || dp.TEKs()[0].SenderIDs[0] != 9 {
		t.Fatalf("installed %+v", dp.TEKs())
	}
	for name, c := range map[string]struct {
		res  *gdoi.Result
		want string
	}{
		"short key": {result(20, true), "TEK_ALGORITHM_KEY missing or not 36 octets"},
		"no SID":    {result(36, false), "sent no sender ID"},
	} {
		dp := sadb.NewMemory()
		if _, err := Install(dp, "G", 1, c.res, now); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: %v", name, err)
		}
		if len(dp.TEKs()) != 0 {
			t.Errorf("%s: something was installed", name)
		}
	}
}

// proves: T4 — re-registration falls in a window before expiry that
// scales with the lifetime and is spread by the random input.
func TestReregisterWindow(t *testing.T) {
	exp := now.Add(time.Hour)
	early, late := ReregisterAt(exp, time.Hour, 0.999), ReregisterAt(exp, time.Hour, 0)
	if late != exp.Add(-3*time.Minute) || early.After(exp.Add(-5*time.Minute)) || !early.After(exp.Add(-6*time.Minute)) {
		t.Fatalf("window [%s, %s] before expiry", exp.Sub(early), exp.Sub(late))
	}
	if d := exp.Sub(ReregisterAt(exp, 2*time.Minute, 0)); d != 30*time.Second {
		t.Fatalf("short lifetimes get at least 30 s: %s", d)
	}
}

// proves: T1 — a rekey's GAP ATD/DTD: the new TEK is accepted at once but
// sent with only ATD later; the TEK it replaces keeps decrypting until
// DTD (RFC 6407 §5.4.1, RFC 5374 §4.2.1).
func TestRekeyActivationDelays(t *testing.T) {
	dp := sadb.NewMemory()
	if _, err := Install(dp, "G", 1, result(36, true), now); err != nil {
		t.Fatal(err)
	}
	old := dp.TEKs()[0]
	r := result(36, false)
	r.Policy.TEKs[0].SPI = 512
	r.KD.Packets[0].SPI = []byte{0, 0, 2, 0}
	r.Policy.GAP = &isakmp.GAP{Attributes: isakmp.Attributes{isakmp.BasicAttr(isakmp.GAPActivationTimeDelay, 30),
		isakmp.BasicAttr(isakmp.GAPDeactivationTimeDelay, 90)}}
	at := now.Add(10 * time.Minute)
	if _, err := ApplyRekey(dp, "G", 1, &gdoi.Rekey{Seq: 1, SA: r.Policy, KD: r.KD}, at); err != nil {
		t.Fatal(err)
	}
	teks := dp.TEKs()
	if len(teks) != 2 {
		t.Fatalf("%d TEKs", len(teks))
	}
	for _, tk := range teks {
		switch tk.SPI {
		case old.SPI:
			if !tk.Deactivate.Equal(at.Add(90 * time.Second)) {
				t.Fatalf("old TEK deactivates at %s", tk.Deactivate.Sub(at))
			}
		case 512:
			if !tk.SendFrom.Equal(at.Add(30*time.Second)) || len(tk.SenderIDs) != 1 {
				t.Fatalf("new TEK sends from +%s with SIDs %v", tk.SendFrom.Sub(at), tk.SenderIDs)
			}
		}
	}
}
