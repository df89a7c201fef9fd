package ike

import (
	"bytes"
	mathrand "math/rand/v2"
	"strings"
	"testing"
)

// initiatorGXI runs main mode between cfgI and a plain responder and
// returns the KE data the initiator sent, and whether both sides
// established.
func initiatorGXI(t *testing.T, cfgI *Config) []byte {
	t.Helper()
	cfgI.KeepTranscript = true
	p := handshake(t, cfgI, pskConfig())
	if p.established(p.i) == nil || p.established(p.r) == nil {
		t.Fatalf("not established: %v / %v", p.failure(p.i), p.failure(p.r))
	}
	sas := p.i.SAs()
	if len(sas) != 1 {
		t.Fatalf("%d initiator SAs", len(sas))
	}
	return sas[0].Transcript().GXI
}

// proves: groundwork (issue 18: the load generator's key pairs made before
// the stage) — Config.KeyPair, when set, is where main mode takes its
// ephemeral key pair (one call per exchange, for the suite's group, and
// the exchange completes with it); nil takes it from g.GenerateKey(Rand)
// as before; a source giving a public value of the wrong length fails the
// exchange instead of sending it.
func TestConfigKeyPairSource(t *testing.T) {
	seed := [32]byte{7}
	g, _ := GroupByID(pskSuite().Group)

	// nil: the key pair GenerateKey draws from Rand, as before (the KE
	// sent is GenerateKey's from some point of the stream Rand gave).
	cfg := pskConfig()
	rec := &recordingReader{r: mathrand.NewChaCha8(seed)}
	cfg.Rand = rec
	got := initiatorGXI(t, cfg)
	found := false
	for o := 0; o < len(rec.b) && !found; o++ {
		_, pub, err := g.GenerateKey(bytes.NewReader(rec.b[o:]))
		found = err == nil && bytes.Equal(pub, got)
	}
	if !found {
		t.Fatal("with no KeyPair source, the KE is not GenerateKey's from Rand")
	}

	// Set: its pair is the one sent and agreed with.
	priv, pub, err := g.GenerateKey(nil)
	if err != nil {
		t.Fatal(err)
	}
	calls := 0
	cfg = pskConfig()
	cfg.KeyPair = func(gr Group) (PrivateKey, []byte, error) {
		calls++
		if gr.ID() != g.ID() {
			t.Errorf("KeyPair asked for group %d, the suite's is %d", gr.ID(), g.ID())
		}
		return priv, pub, nil
	}
	if got := initiatorGXI(t, cfg); !bytes.Equal(got, pub) || calls != 1 {
		t.Fatalf("KE from the source: %v, calls %d", bytes.Equal(got, pub), calls)
	}

	// A wrong-length public value is refused before anything is sent.
	cfg = pskConfig()
	cfg.KeyPair = func(Group) (PrivateKey, []byte, error) { return priv, pub[:len(pub)-1], nil }
	p := newPair(t, cfg, pskConfig())
	if _, out, err := p.i.Initiate(addrR, p.now); err != nil {
		t.Fatal(err)
	} else {
		p.run(p.i, out)
	}
	if f := p.failure(p.i); f == nil || !strings.Contains(f.Error(), "key pair source") {
		t.Fatalf("short public value: failure %v", f)
	}
}

// recordingReader keeps what it read.
type recordingReader struct {
	r interface{ Read([]byte) (int, error) }
	b []byte
}

func (r *recordingReader) Read(p []byte) (int, error) {
	n, err := r.r.Read(p)
	r.b = append(r.b, p[:n]...)
	return n, err
}
