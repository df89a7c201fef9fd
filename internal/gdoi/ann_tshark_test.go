package gdoi

import (
	"bytes"
	"encoding/hex"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/groupvpn/groupvpn/internal/ike"
	"github.com/groupvpn/groupvpn/internal/pcap"
	"github.com/groupvpn/groupvpn/internal/testnet"
	"github.com/groupvpn/groupvpn/isakmp"
)

// datagram is one captured IKE message and its direction.
type datagram struct {
	src, dst netip.AddrPort
	b        []byte
}

// proves: C2 (issue 16: ANN decoded by a third party) — Wireshark, given
// only the phase-1 encryption key in its IKEv1 decryption table, decrypts
// a captured main mode and the two encrypted ANNs that follow it (exchange
// 240, HASH, SEQ, ID, COOP, MEMBERS) with no malformation or expert error.
func TestTsharkDecryptsANN(t *testing.T) {
	testnet.RequireTools(t, "tshark") // fails under CI=true: make test installs it
	tshark, err := exec.LookPath("tshark")
	if err != nil {
		t.Fatal(err)
	}
	// Wireshark 4.0 decrypts IKEv1 only with MD5 or SHA-1 as the phase-1
	// hash, and learns the cipher only from a phase-1 SA of the IPsec DOI
	// (it reads a GDOI-DOI phase-1 SA as a GDOI SA); the ANN protection
	// depends on neither.
	s := ike.Suite{KeyBits: 256, Hash: ike.SHA1, Group: 14, Auth: ike.AuthPSK}
	cfg := &ike.Config{Suites: []ike.Suite{s}, DOI: isakmp.DOIIPsec,
		Creds: ike.Credentials{PSK: func(netip.Addr) ([]byte, bool) { return []byte("coop"), true }}}
	ea, _ := ike.NewEndpoint(cfg, gmAddr, ike.Limits{})
	eb, _ := ike.NewEndpoint(cfg, ksAddr, ike.Limits{})
	_, out, err := ea.Initiate(ksAddr, t0)
	if err != nil {
		t.Fatal(err)
	}
	// ike.Exchange, keeping every datagram for the capture.
	var cap []datagram
	from, to := ea, eb
	fromAddr, toAddr := gmAddr, ksAddr
	for len(out.Send) > 0 {
		var next ike.Output
		for _, p := range out.Send {
			cap = append(cap, datagram{fromAddr, toAddr, p.Data})
			o := to.Handle(fromAddr, p.Data, t0)
			next.Send = append(next.Send, o.Send...)
		}
		out = next
		from, to = to, from
		fromAddr, toAddr = toAddr, fromAddr
	}
	if len(ea.SAs()) != 1 || len(eb.SAs()) != 1 {
		t.Fatal("phase 1 not established")
	}
	sa, sb := ea.SAs()[0], eb.SAs()[0]
	for i, dir := range []struct {
		s        ANNProtector
		src, dst netip.AddrPort
	}{{sa, gmAddr, ksAddr}, {sb, ksAddr, gmAddr}} {
		a := testANN()
		a.Seq = uint32(i + 1)
		msg, err := SealANN(dir.s, a, nil)
		if err != nil {
			t.Fatal(err)
		}
		cap = append(cap, datagram{dir.src, dir.dst, msg})
	}

	dir := t.TempDir()
	path := filepath.Join(dir, "ann.pcap")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	w, err := pcap.NewWriter(f)
	if err != nil {
		t.Fatal(err)
	}
	for i, d := range cap {
		if err := w.WriteUDP(time.Unix(1700000000+int64(i), 0), d.src, d.dst, d.b); err != nil {
			t.Fatal(err)
		}
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	icky, _ := sa.Cookies()
	uat := fmt.Sprintf(`uat:ikev1_decryption_table:%s,%s`, hex.EncodeToString(icky[:]), hex.EncodeToString(sa.Keys().Ka))
	cmd := exec.Command(tshark, "-n", "-r", path, "-d", "udp.port==848,isakmp", "-o", uat, "-V")
	cmd.Env = append(os.Environ(), "HOME="+dir)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	outb, err := cmd.Output()
	if err != nil {
		t.Fatalf("tshark: %v\n%s", err, stderr.String())
	}
	text := string(outb)
	anns := text[strings.LastIndex(text, "Frame 7:"):]
	for _, want := range []string{"Exchange type: Unknown (240)", "Encryption: Encrypted", "Payload: Hash (8)",
		"Sequence Number: 1", "Sequence Number: 2", "ID_KEY_ID: 000004d2",
		"Payload: Private Use (192)", "Payload: Private Use (193)"} {
		if !strings.Contains(anns, want) {
			t.Errorf("tshark output lacks %q", want)
		}
	}
	if strings.Contains(text, "Malformed") || strings.Contains(text, "Expert Info") {
		t.Error("tshark reports a malformation or expert error")
	}
	if t.Failed() {
		t.Logf("tshark decoded:\n%s", text)
	}
}
