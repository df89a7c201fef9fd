package tmd

import (
	"testing"
	"time"
)

// proves: D1 (issue 15: lifetimes expire in one place) — a client's Expire
// only keeps its mirror in step (sadb.Memory.Expire, the rule tmd uses):
// it sends tmd nothing, and the TEK and KEK stay in tmd's database until
// tmd's own Sweep expires them there.
func TestClientExpireLeavesTmdToItsSweep(t *testing.T) {
	path := sockPath(t)
	r := start(t, path, nil)
	c := dial(t, path, "isakmpd")
	now := time.Now()
	tk := fullTEK("g", 0x10)
	tk.Expires, tk.Deactivate = now.Add(time.Hour), time.Time{}
	k := fullKEK("g")
	k.Expires = now.Add(time.Hour)
	if err := c.InstallTEK(tk); err != nil {
		t.Fatal(err)
	}
	if err := c.InstallKEK(k); err != nil {
		t.Fatal(err)
	}
	later := now.Add(2 * time.Hour)
	teks, keks, next := c.Expire(later)
	if len(teks) != 1 || len(keks) != 1 || !next.IsZero() || len(c.TEKs()) != 0 || len(c.KEKs()) != 0 {
		t.Fatalf("mirror: expired %d TEKs %d KEKs next %v, left %d %d", len(teks), len(keks), next, len(c.TEKs()), len(c.KEKs()))
	}
	if len(r.srv.DB().TEKs()) != 1 || len(r.srv.DB().KEKs()) != 1 {
		t.Fatalf("the client deleted from tmd: %d TEKs %d KEKs", len(r.srv.DB().TEKs()), len(r.srv.DB().KEKs()))
	}
	r.srv.Sweep(later)
	if len(r.srv.DB().TEKs()) != 0 || len(r.srv.DB().KEKs()) != 0 {
		t.Fatalf("tmd's sweep left %d TEKs %d KEKs", len(r.srv.DB().TEKs()), len(r.srv.DB().KEKs()))
	}
}
