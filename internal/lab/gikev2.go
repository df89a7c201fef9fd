package lab

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/groupvpn/groupvpn/internal/ctl"
	"github.com/groupvpn/groupvpn/internal/ikev2d"
	"github.com/groupvpn/groupvpn/internal/policy"
	"github.com/groupvpn/groupvpn/internal/sadb"
)

// `groupvpn lab --protocol gikev2` (issue 17): the same lab with G-IKEv2
// (RFC 9838) instead of GDOI. The key server and every member are ikev2d
// routers (internal/ikev2d.Router) in this process, each configured from
// the IOS-XE G-IKEv2 file the templates below render (crypto ikev2
// proposal/policy/keyring/profile, `gikev2 PROFILE` under server local,
// `client protocol gikev2 PROFILE` on the members), parsed by the real
// parser and mapped as ikev2d maps it (Options.IKEv2Config). Members
// register with IKE_SA_INIT + GSA_AUTH over UDP on 127.0.0.0/8; their TEKs
// go into the lab's SA database of each member (labSADB), which feeds
// that member's ESP engine exactly as for GDOI.

// The protocols of Options.Protocol.
const (
	ProtocolGDOI   = "gdoi"
	ProtocolGIKEv2 = "gikev2"
)

// Group is the lab's group name (both protocols).
const Group = "LAB"

const ksV2Template = `! groupvpn lab: G-IKEv2 key server (generated)
hostname {{.Name}}
crypto ikev2 proposal lab-gcm
 encryption aes-gcm-256
 prf sha256
 group 19
crypto ikev2 policy lab-pol
 proposal lab-gcm
crypto ikev2 keyring lab-keys
 peer lab-members
  address 127.0.0.0 255.0.0.0
  pre-shared-key {{.PSK}}
crypto ikev2 profile lab-members
 match identity remote address 127.0.0.0 255.0.0.0
 authentication local pre-share
 authentication remote pre-share
 keyring local lab-keys
 lifetime 86400
crypto key import ec LAB-REKEY file rekey.pem
!
ip access-list extended lab-traffic
 permit ip 10.10.0.0 0.0.255.255 10.10.0.0 0.0.255.255
ip access-list extended lab-voice
 permit udp 10.20.0.0 0.0.255.255 10.20.0.0 0.0.255.255 eq 5060
!
crypto ipsec transform-set lab-gcm esp-gcm 256
crypto ipsec transform-set lab-cbc esp-aes 128 esp-sha256-hmac
crypto ipsec profile lab-data
 set transform-set lab-gcm
 set security-association lifetime seconds {{.TEKLife}}
crypto ipsec profile lab-voice
 set transform-set lab-cbc
 set security-association lifetime seconds {{.VoiceLife}}
!
crypto gdoi group LAB
 identity number 1001
 server local
  rekey lifetime seconds {{.KEKLife}}
  rekey authentication mypubkey ec LAB-REKEY
  rekey transport unicast
  address ipv4 {{.KS}}
  gikev2 lab-members
  sa ipsec 1
   profile lab-data
   match address ipv4 lab-traffic
   replay counter window-size 64
  sa ipsec 2
   profile lab-voice
   match address ipv4 lab-voice
   replay time window-size 5
end
`

const gmV2Template = `! groupvpn lab: G-IKEv2 group member {{.N}} (generated)
hostname gm{{.N}}
crypto ikev2 proposal lab-gcm
 encryption aes-gcm-256
 prf sha256
 group 19
crypto ikev2 policy lab-pol
 proposal lab-gcm
crypto ikev2 keyring lab-keys
 peer ks
  address {{.KS}}
  pre-shared-key {{.PSK}}
crypto ikev2 profile lab-ks
 match identity remote address {{.KS}} 255.255.255.255
 authentication local pre-share
 authentication remote pre-share
 keyring local lab-keys
!
crypto gkm group LAB
 identity number 1001
 server address ipv4 {{.KS}}
 client protocol gikev2 lab-ks
!
crypto map LAB-MAP 10 gdoi
 set group LAB
interface lo
 crypto map LAB-MAP
end
`

// v2Lab is a G-IKEv2 lab's routers and their control servers.
type v2Lab struct {
	ks    *ikev2d.Router
	gms   []*ikev2d.Router
	ctl   map[string]*ctl.Server // node name -> its control server
	names []string               // "ks", "gm1", ...
}

// checkGIKEv2 refuses what a G-IKEv2 lab does not run.
func checkGIKEv2(o Options) error {
	switch {
	case o.KeyServers > 1:
		return errors.New("lab: --protocol gikev2 runs one key server: cooperative key servers (COOP) speak IKEv1 (GDOI) only, G-IKEv2 has none (docs/config.md, G-IKEv2); use --protocol gdoi with --key-servers")
	case o.IKEv2Config == nil:
		return errors.New("lab: a G-IKEv2 lab needs Options.IKEv2Config (ikev2d's configuration mapping)")
	case o.Secondary || o.State || o.Hold || len(o.Old) > 0 || o.KSListen != nil || o.KSListenN != nil || len(o.KSVersion) > 0:
		return errors.New("lab: a G-IKEv2 lab runs without Secondary, State, Hold, Old, KSListen and KSVersion")
	}
	return nil
}

// startGIKEv2 renders, parses and maps every node's configuration, then
// runs the key server's router and the members' (Start, o.Protocol
// ProtocolGIKEv2).
func (l *Lab) startGIKEv2(ctx context.Context, o Options, vars map[string]any) error {
	v := &v2Lab{ctl: map[string]*ctl.Server{}}
	l.v2 = v
	newRouter := func(name string, cfg *policy.Config, at netip.Addr, dp sadb.Dataplane, socket bool) (*ikev2d.Router, error) {
		listen := []netip.AddrPort{netip.AddrPortFrom(at, o.Port)}
		rc, err := o.IKEv2Config(cfg, listen, o.Port)
		if err != nil {
			return nil, fmt.Errorf("lab: %s: %w", name, err)
		}
		log := o.Logger.With("node", name)
		r, err := ikev2d.New(rc, ikev2d.Options{Listen: listen, Dataplane: dp, Logger: log, Now: o.Now})
		if err != nil {
			return nil, fmt.Errorf("lab: %s: %w", name, err)
		}
		srv := ctl.NewServer(log)
		srv.SetHostname(name)
		r.Serve(srv)
		v.ctl[name] = srv
		v.names = append(v.names, name)
		if socket {
			path := filepath.Join(o.Dir, name+".sock")
			ln, err := ctl.ListenGroup(path, "")
			if err != nil {
				return nil, fmt.Errorf("lab: %s: %w", name, err)
			}
			l.Sockets[name] = path
			l.running.Add(1)
			go func() {
				defer l.running.Done()
				srv.ServeListener(ctx, ln)
			}()
		}
		l.running.Add(1)
		go func() {
			defer l.running.Done()
			if err := r.Run(ctx); err != nil && ctx.Err() == nil {
				l.mu.Lock()
				if l.failed == nil {
					l.failed = fmt.Errorf("lab: %s stopped: %w", name, err)
				}
				l.mu.Unlock()
			}
		}()
		return r, nil
	}
	ksCfg, err := render(o.Dir, "ks.conf", ksV2Template, vars)
	if err != nil {
		return err
	}
	if v.ks, err = newRouter("ks", ksCfg, KSAddr, nil, true); err != nil {
		return err
	}
	for i := 0; i < o.Members; i++ {
		name := fmt.Sprintf("gm%d", i+1)
		vars["N"] = i + 1
		c, err := render(o.Dir, name+".conf", gmV2Template, vars)
		if err != nil {
			return err
		}
		db := &labSADB{Memory: sadb.NewMemory()}
		l.sadbs = append(l.sadbs, db)
		r, err := newRouter(name, c, l.GMAddr(i), db, !o.NoGMSockets)
		if err != nil {
			return err
		}
		v.gms = append(v.gms, r)
	}
	return nil
}

// Protocol is the lab's registration protocol: ProtocolGDOI or
// ProtocolGIKEv2.
func (l *Lab) Protocol() string {
	if l.v2 != nil {
		return ProtocolGIKEv2
	}
	return ProtocolGDOI
}

// Members is the number of group members.
func (l *Lab) Members() int {
	if l.v2 != nil {
		return len(l.v2.gms)
	}
	return len(l.GMs)
}

// Exec runs a command on a node's control server ("ks", "gm1", ...) of a
// G-IKEv2 lab: ikev2d's own commands (show crypto gdoi, show crypto gdoi
// ks members, show crypto ikev2 statistics, ...).
func (l *Lab) Exec(ctx context.Context, node, line string) (string, error) {
	var srv *ctl.Server
	if l.v2 != nil {
		srv = l.v2.ctl[node]
	}
	if srv == nil {
		return "", fmt.Errorf("lab: no G-IKEv2 node %q", node)
	}
	r := srv.Exec(ctx, line)
	if !r.OK {
		return r.Text, fmt.Errorf("lab: %s: %s: %s", node, line, r.Error)
	}
	return r.Text, nil
}

// v2Members is every member router's status (one group each).
func (l *Lab) v2Members(ctx context.Context) ([]ikev2d.MemberStatus, error) {
	out := make([]ikev2d.MemberStatus, len(l.v2.gms))
	for i, r := range l.v2.gms {
		var st []ikev2d.MemberStatus
		if err := r.Do(ctx, func() { st = r.Members() }); err != nil {
			return nil, err
		}
		if len(st) > 0 {
			out[i] = st[0]
		}
	}
	return out, nil
}

// v2Registered counts the registered members.
func (l *Lab) v2Registered(ctx context.Context) (int, error) {
	ms, err := l.v2Members(ctx)
	if err != nil {
		return 0, err
	}
	n := 0
	for _, m := range ms {
		if m.Registered {
			n++
		}
	}
	return n, nil
}

// v2States counts the members per state for Live's status line.
func (l *Lab) v2States(ctx context.Context) map[string]int {
	counts := map[string]int{}
	sctx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	ms, err := l.v2Members(sctx)
	if err != nil {
		counts[StateDown] = len(l.v2.gms)
		return counts
	}
	now := time.Now()
	for i, m := range ms {
		live := 0
		for _, t := range l.sadbs[i].TEKs() {
			if t.Expires.After(now) {
				live++
			}
		}
		switch {
		case live == 0:
			counts[StateNoTEK]++
		case !m.Registered:
			counts[StateRegister]++
		default:
			counts[StateRegistered]++
		}
	}
	return counts
}

// v2Summary prints the key server's member table (ikev2d's show crypto
// gdoi ks members) and what every member holds.
func (l *Lab) v2Summary(ctx context.Context, out io.Writer) error {
	text, err := l.Exec(ctx, "ks", "show crypto gdoi ks members")
	if err != nil {
		return err
	}
	lines := strings.Split(strings.TrimRight(text, "\n"), "\n")
	var head, rows []string
	for _, ln := range lines {
		if strings.HasPrefix(ln, "  Group Member ID") {
			rows = append(rows, ln)
		} else {
			head = append(head, ln)
		}
	}
	// By address (ikev2d lists them in its own order).
	addrOf := func(r string) netip.Addr {
		f := strings.Fields(r)
		if len(f) < 5 {
			return netip.Addr{}
		}
		a, _ := netip.ParseAddr(f[4])
		return a
	}
	slices.SortStableFunc(rows, func(a, b string) int { return addrOf(a).Compare(addrOf(b)) })
	fmt.Fprintf(out, "\nks# show crypto gdoi ks members\n%s\n", strings.Join(head, "\n"))
	show, skipped := rowsShown(len(rows), l.all)
	for i, r := range rows {
		if i == SummaryEnds && skipped > 0 {
			skipLine(out, "  ", skipped, "members")
		}
		if show(i) {
			fmt.Fprintln(out, r)
		}
	}
	ms, err := l.v2Members(ctx)
	if err != nil {
		return err
	}
	fmt.Fprintln(out, "\nGroup members and the SAs they hold (G-IKEv2):")
	fmt.Fprintf(out, "  %-6s %-12s %-15s %-6s %s\n", "GM", "address", "status", "rekeys", "TEK SPIs (transform, lifetime left)")
	show, skipped = rowsShown(len(ms), l.all)
	states, tekSets := map[string]int{}, map[string]bool{}
	now := time.Now()
	if l.now != nil {
		now = l.now()
	}
	for i, m := range ms {
		status := "not registered"
		if m.Registered {
			status = "registered"
		}
		var teks, spis []string
		ts := l.sadbs[i].TEKs()
		slices.SortFunc(ts, func(a, b sadb.TEK) int { return a.Installed.Compare(b.Installed) })
		for _, t := range ts {
			tr := map[uint8]string{12: "aes-cbc", 20: "aes-gcm"}[t.Transform]
			teks = append(teks, fmt.Sprintf("0x%08x (%s, %ds)", t.SPI, tr, int(t.Expires.Sub(now).Seconds())))
			spis = append(spis, fmt.Sprintf("0x%08x", t.SPI))
		}
		states[status]++
		tekSets[strings.Join(spis, ", ")] = true
		if i == SummaryEnds && skipped > 0 {
			skipLine(out, "  ", skipped, "members")
		}
		if show(i) {
			fmt.Fprintf(out, "  %-6s %-12s %-15s %-6d %s\n", fmt.Sprintf("gm%d", i+1), l.GMAddr(i), status, m.Rekeys, strings.Join(teks, ", "))
		}
	}
	if skipped > 0 {
		fmt.Fprintf(out, "  %d members, %s to %s: %s; %d distinct TEK set(s) among them\n",
			len(ms), l.GMAddr(0), l.GMAddr(len(ms)-1), countLine(states), len(tekSets))
	}
	return nil
}

// RekeyReport is what GIKEv2Rekey measured.
type RekeyReport struct {
	Took    time.Duration // from the command to the last member applying it
	NewSPIs []uint32      // the key server's TEKs the rekey added
	Applied int           // members that applied it
}

// GIKEv2Rekey makes the key server of a G-IKEv2 lab send a rekey now, as
// a scheduled one (ikev2d.Router.Rekey: new TEKs in a GSA_REKEY under the
// Rekey SA, unicast to every member; the CLI's crypto gdoi ks rekey is
// the policy replace) and waits (at most timeout) until
// every member applied it and holds the new TEKs. The new TEKs are
// accepted at once and sent with from the rekey's activation time delay
// (GWP_ATD, ks.RekeyATD) on, so that no packet is lost while the members
// get it one after the other.
func (l *Lab) GIKEv2Rekey(ctx context.Context, timeout time.Duration) (RekeyReport, error) {
	var rep RekeyReport
	if l.v2 == nil {
		return rep, errors.New("lab: not a G-IKEv2 lab")
	}
	before, err := l.v2Members(ctx)
	if err != nil {
		return rep, err
	}
	ksTEKs := func() (map[uint32]bool, error) {
		out := map[uint32]bool{}
		var serr error
		err := l.v2.ks.Do(ctx, func() {
			st, err := l.v2.ks.Server().State(Group, time.Now())
			if err != nil {
				serr = err
				return
			}
			for _, t := range st.TEKs {
				out[t.SPI] = true
			}
		})
		return out, errors.Join(err, serr)
	}
	old, err := ksTEKs()
	if err != nil {
		return rep, err
	}
	start := time.Now()
	var rerr error
	if err := l.v2.ks.Do(ctx, func() { rerr = l.v2.ks.Rekey(Group) }); err != nil {
		return rep, err
	}
	if rerr != nil {
		return rep, fmt.Errorf("lab: rekey: %w", rerr)
	}
	now, err := ksTEKs()
	if err != nil {
		return rep, err
	}
	for s := range now {
		if !old[s] {
			rep.NewSPIs = append(rep.NewSPIs, s)
		}
	}
	slices.Sort(rep.NewSPIs)
	if len(rep.NewSPIs) == 0 {
		return rep, errors.New("lab: the rekey made no new TEK")
	}
	deadline := start.Add(timeout)
	for {
		ms, err := l.v2Members(ctx)
		if err != nil {
			return rep, err
		}
		rep.Applied = 0
		for i, m := range ms {
			held := map[uint32]bool{}
			for _, t := range l.sadbs[i].TEKs() {
				held[t.SPI] = true
			}
			if m.Rekeys > before[i].Rekeys && !slices.ContainsFunc(rep.NewSPIs, func(s uint32) bool { return !held[s] }) {
				rep.Applied++
			}
		}
		if rep.Applied == len(ms) {
			rep.Took = time.Since(start)
			return rep, nil
		}
		if time.Now().After(deadline) {
			return rep, fmt.Errorf("lab: only %d of %d members applied the rekey within %s", rep.Applied, len(ms), timeout)
		}
		select {
		case <-ctx.Done():
			return rep, ctx.Err()
		case <-time.After(10 * time.Millisecond):
		}
	}
}
