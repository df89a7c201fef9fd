package gm

import (
	"bytes"
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"testing"
	"time"

	"github.com/groupvpn/groupvpn/internal/gdoi"
	"github.com/groupvpn/groupvpn/isakmp"
)

// proves: T1 (issue 14 item 2: the rekey key can be replaced on a running
// KS without members rejecting rekeys) — a registered member, the KS's
// key replaced (ECDSA P-256 -> RSA 2048, ks.Server.UpdatePolicy as a
// reload does):
//
//	GM                                      KS
//	                                 <--    seq n: new KEK naming the new key, signed with the old
//	(accepted: verified with the key of its registration)
//	ACK n                            -->
//	                                 <--    seq n+1 under the new KEK, signed with the new key
//	(accepted: verified with the key the last rekey brought)
//	ACK n+1                          -->
//	                                 <--    seq n+2 under the new KEK, signed with the OLD key
//	(rejected, counted, no ACK)
func TestMemberAcceptsReplacedRekeyKey(t *testing.T) {
	w := registered(t)
	k := w.kss[0]
	st, err := k.srv.State(group, w.now)
	if err != nil {
		t.Fatal(err)
	}
	old, err := x509.ParsePKCS8PrivateKey(st.SigningKey) // the key the member holds
	if err != nil {
		t.Fatal(err)
	}
	oldKey := old.(crypto.Signer)
	oldAlg := w.dp.KEKs()[0].SigAlg
	newKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	cfg := groupConfig(t, k.addr.Addr())
	cfg.SigningKey = newKey
	if err := k.srv.UpdatePolicy(cfg); err != nil {
		t.Fatal(err)
	}
	w.runFor(time.Minute)

	first := w.rekey(k)
	s := w.status()
	if s.Rekeys.Received != 1 || s.Rekeys.Rejected != 0 || len(k.acks) != 1 || k.acks[0] != first.Seq {
		t.Fatalf("the announcing rekey: %+v, ACKs %v\n%s", s.Rekeys, k.acks, w.dump())
	}
	keks := w.dp.KEKs()
	newPub, _ := x509.MarshalPKIXPublicKey(newKey.Public())
	if len(keks) != 1 || !bytes.Equal(keks[0].SigKey, newPub) || keks[0].SigAlg != isakmp.SigAlgRSA {
		t.Fatalf("after the announcement the member holds %d KEKs, the first with alg %d", len(keks), keks[0].SigAlg)
	}

	w.runFor(time.Minute)
	second := w.rekey(k)
	if s := w.status(); s.Rekeys.Received != 2 || s.Rekeys.Rejected != 0 || s.Seq != second.Seq || len(k.acks) != 2 || k.acks[1] != second.Seq {
		t.Fatalf("the rekey signed with the new key: %+v, ACKs %v\n%s", s.Rekeys, k.acks, w.dump())
	}

	// The next rekey, signed again with the old key (a KS that kept it,
	// or a forger who has it): rejected.
	third, err := k.srv.Rekey(group, w.now)
	if err != nil {
		t.Fatal(err)
	}
	k.rekeys = append(k.rekeys, third)
	kek := gdoi.KEK{SPI: keks[0].SPI, Key: keks[0].Key}
	r, err := gdoi.OpenPush(third.Data, kek, newKey.Public(), isakmp.SigAlgRSA)
	if err != nil {
		t.Fatal(err)
	}
	forged, err := gdoi.SealPush(r, kek, oldKey, oldAlg, rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	res := w.push(k.addr, forged)
	if s := w.status(); s.Rekeys.Rejected != 1 || s.Seq != second.Seq || len(res.Send) != 0 || len(k.acks) != 2 {
		t.Fatalf("a rekey signed with the old key after the announcement: %+v, sends %d", s.Rekeys, len(res.Send))
	}
	w.push(k.addr, third.Data)
	if s := w.status(); s.Rekeys.Received != 3 || s.Seq != third.Seq {
		t.Fatalf("the genuine rekey: %+v", s)
	}
}
