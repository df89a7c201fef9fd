package ikev2d

import (
	"errors"
	"fmt"
	"slices"
)

// Reconfigure applies a reread configuration file (SPEC D4, P1): the
// key-server groups' policy (ks.Server.UpdatePolicy: nothing is sent, the
// new policy reaches the members with the next rekey), the member groups'
// key-server lists and the pre-shared keys take effect; IKE SAs,
// registrations and keys stay. A file that adds, removes or renumbers a
// group, or changes the IKE suites, identity or certificates, is refused
// whole with the reason (those need a restart). Use it inside Do.
func (r *Router) Reconfigure(cfg Config) error {
	key := func(name string, id uint32) string { return fmt.Sprintf("%s/%d", name, id) }
	var oldKS, newKS, oldGM, newGM []string
	for _, g := range r.cfg.KS {
		oldKS = append(oldKS, key(g.Name, g.ID))
	}
	for _, g := range cfg.KS {
		newKS = append(newKS, key(g.Name, g.ID))
	}
	for _, g := range r.cfg.GM {
		oldGM = append(oldGM, key(g.Name, g.ID))
	}
	for _, g := range cfg.GM {
		newGM = append(newGM, key(g.Name, g.ID))
	}
	slices.Sort(oldKS)
	slices.Sort(newKS)
	slices.Sort(oldGM)
	slices.Sort(newGM)
	if !slices.Equal(oldKS, newKS) || !slices.Equal(oldGM, newGM) {
		return fmt.Errorf("groups added, removed or renumbered (key server %v -> %v, member %v -> %v): restart ikev2d to apply them",
			oldKS, newKS, oldGM, newGM)
	}
	if !slices.Equal(r.cfg.Suites, cfg.Suites) || r.cfg.Lifetime != cfg.Lifetime || !sameIdentity(r, cfg) {
		return errors.New("the IKE proposals, lifetime or local identity changed: restart ikev2d to apply them")
	}
	if r.ks != nil {
		for _, g := range cfg.KS {
			if err := r.ks.srv.UpdatePolicy(g); err != nil {
				return fmt.Errorf("key-server group %s: %w", g.Name, err)
			}
			r.log.Info("POLICY_CHANGE: the group's policy is updated; it reaches the members with the next rekey", "group", g.Name)
		}
	}
	for _, m := range r.gm {
		for _, g := range cfg.GM {
			if g.Name == m.g.Name && len(g.Servers) > 0 {
				m.g.Servers = g.Servers
				m.server %= len(m.g.Servers)
			}
		}
	}
	r.cfg.Creds.PSK = cfg.Creds.PSK
	r.cfg.KS, r.cfg.GM = cfg.KS, cfg.GM
	return nil
}

func sameIdentity(r *Router, cfg Config) bool {
	a, b := r.cfg.LocalID, cfg.LocalID
	if a == nil || b == nil {
		return a == b
	}
	return a.Type == b.Type && string(a.Data) == string(b.Data)
}
