package loadgen

import (
	"context"
	"fmt"
	"sync/atomic"

	"github.com/groupvpn/groupvpn/internal/ike"
)

// keyPool holds a shard's members' main-mode Diffie-Hellman key pairs,
// made before the stage (issue 18): on a host whose 2 cores the key
// server shares with the generator, each microsecond the generator spends
// per registration is taken from the key server's rate, and a key pair is
// 14 µs of ECP-256. The generator is the rig, not what is measured: its
// members' key pairs are made before their first registration begins, so
// that in the stage a member's phase 1 costs it the agreement only. Each
// pair is used by one exchange and dropped (never reused across
// registrations or members); once the pool is empty (re-registrations
// beyond the pairs made ahead), a member makes its pair in the exchange,
// as ike does without a source, and it is counted (KeyPairsInline). The
// key server makes its own key pair inside each exchange, unchanged.
type keyPool struct {
	group  ike.Group
	pairs  []keyPair
	inline *atomic.Int64 // pairs made in an exchange: the pool was empty
}

type keyPair struct {
	priv ike.PrivateKey
	pub  []byte
}

// fill makes n key pairs of the pool's group (crypto/rand), until ctx
// ends.
func (p *keyPool) fill(ctx context.Context, n int) error {
	p.pairs = make([]keyPair, 0, n)
	for i := range n {
		if i%1024 == 0 && ctx.Err() != nil {
			return ctx.Err()
		}
		priv, pub, err := p.group.GenerateKey(nil)
		if err != nil {
			return fmt.Errorf("loadgen: key pair ahead of the stage: %w", err)
		}
		p.pairs = append(p.pairs, keyPair{priv, pub})
	}
	return nil
}

// take is the shard's ike.Config.KeyPair: a pair made ahead, forgotten by
// the pool as it is handed out, or one made now when none is left (or for
// another group than the pool's).
func (p *keyPool) take(g ike.Group) (ike.PrivateKey, []byte, error) {
	if n := len(p.pairs); n > 0 && g.ID() == p.group.ID() {
		kp := p.pairs[n-1]
		p.pairs[n-1] = keyPair{}
		p.pairs = p.pairs[:n-1]
		if len(p.pairs) == 0 {
			p.pairs = nil // the backing array's memory goes back to the heap
		}
		return kp.priv, kp.pub, nil
	}
	p.inline.Add(1)
	return g.GenerateKey(nil)
}
