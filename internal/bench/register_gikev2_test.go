package bench

import (
	"context"
	"strings"
	"testing"
	"time"
)

// proves: G2 (issue 17: groupvpn bench register --protocol gikev2: members
// register over real UDP on 127.0.0.0/8 with IKE_SA_INIT, GSA_AUTH and
// GSA_REGISTRATION through internal/ikev2 and internal/gikev2, each
// unwrapping both TEKs; the report puts the rate beside the crypto ceiling
// measured in the same run and the GDOI figure)
func TestRegisterGIKEv2Smoke(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	start := time.Now()
	r, err := RegisterGIKEv2(ctx, 20, 26848, true)
	if err != nil {
		t.Fatal(err)
	}
	if r.PerSec <= 0 || r.Ceiling <= 0 || r.CryptoOp <= 0 || r.GDOI == nil || r.GDOI.PerSec <= 0 || !strings.Contains(r.Suite, "ecp256") {
		t.Fatalf("report: %+v", r)
	}
	var b strings.Builder
	r.Print(&b)
	for _, want := range []string{"IKE_SA_INIT aes256gcm16-prfsha256-ecp256/PSK + GSA_AUTH + GSA_REGISTRATION", "achieved / ceiling", "beside it, GDOI in the same run", "G-IKEv2 / GDOI registrations per second"} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("report lacks %q:\n%s", want, b.String())
		}
	}
	t.Logf("%s(%s)", b.String(), time.Since(start).Round(time.Millisecond))
}

// BenchmarkRegisterGIKEv2 is the scenario under go test -bench: b.N
// members register at once (reg/s between the first and the last at the
// KS); BenchmarkGIKEv2RegistrationCrypto is its ceiling.
func BenchmarkRegisterGIKEv2(b *testing.B) {
	r, err := registerGIKEv2(context.Background(), max(b.N, 2), 27848, false, time.Microsecond)
	if err != nil {
		b.Fatal(err)
	}
	b.ReportMetric(r.PerSec, "reg/s")
}

// BenchmarkGIKEv2RegistrationCrypto is the KS's DH + AUTH + prf+ of one
// G-IKEv2 registration (the ceiling of BenchmarkRegisterGIKEv2).
func BenchmarkGIKEv2RegistrationCrypto(b *testing.B) { gikev2CryptoOp(b) }
