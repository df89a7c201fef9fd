package gm

import (
	"fmt"
	"testing"
	"time"
)

// proves: R2, P3 — TEK_SLT = MIN(TEK_RLT, MAX(90s, MIN(5% TEK_CLT, 3600s)))
// across configured lifetimes from 60 s to 8 h and remaining lifetimes
// around each boundary (90 s, 5%, 3600 s).
func TestShortenedLifetime(t *testing.T) {
	s := time.Second
	cases := []struct{ clt, rlt, want time.Duration }{
		// 5% of CLT below 90 s: the 90 s floor applies (unless RLT is less).
		{60 * s, 60 * s, 60 * s},
		{60 * s, 30 * s, 30 * s},
		{1800 * s, 1800 * s, 90 * s}, // 5% = 90 s exactly
		{1800 * s, 89 * s, 89 * s},
		{1800 * s, 91 * s, 90 * s},
		{3600 * s, 3600 * s, 180 * s}, // 5% = 180 s
		{3600 * s, 179 * s, 179 * s},
		{3600 * s, 181 * s, 180 * s},
		{7200 * s, 7200 * s, 360 * s},
		{8 * 3600 * s, 8 * 3600 * s, 1440 * s}, // 5% of 8 h = 24 min
		{8 * 3600 * s, 1439 * s, 1439 * s},
		{8 * 3600 * s, 1441 * s, 1440 * s},
		// 5% above 3600 s (CLT above 20 h): the 3600 s ceiling applies.
		{86400 * s, 86400 * s, 3600 * s},
		{86400 * s, 3599 * s, 3599 * s},
		{86400 * s, 3601 * s, 3600 * s},
		{72000 * s, 72000 * s, 3600 * s}, // 5% = 3600 s exactly
	}
	for _, c := range cases {
		t.Run(fmt.Sprintf("clt=%s/rlt=%s", c.clt, c.rlt), func(t *testing.T) {
			if got := ShortenedLifetime(c.rlt, c.clt); got != c.want {
				t.Fatalf("TEK_SLT = %s, want %s", got, c.want)
			}
		})
	}
	for clt := 60 * s; clt <= 8*3600*s; clt += 60 * s {
		for _, rlt := range []time.Duration{clt, clt / 2, 90 * s, clt / 20, 3600 * s} {
			got := ShortenedLifetime(rlt, clt)
			if got > rlt || got > 3600*s || (got < 90*s && got != rlt) {
				t.Fatalf("clt %s rlt %s: TEK_SLT %s breaks a bound", clt, rlt, got)
			}
		}
	}
}
