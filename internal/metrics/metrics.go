// Package metrics is the opt-in Prometheus endpoint of a daemon
// (`groupvpn isakmpd -metrics ADDR:PORT`, issue 14 item 7).
//
// There is no second copy of state: Collector reads, at scrape time, the
// node's Snapshot (what the show crypto gdoi, ks members, gm counters and
// isakmp statistics commands render) and the packet counters of the SA
// database (what show crypto ipsec sa renders), through the two small
// interfaces below. The GDOI metric names follow the objects of
// CISCO-GDOI-MIB (1.3.6.1.4.1.9.9.759); docs/operations.md, section
// Metrics, lists each metric with the MIB object it follows.
package metrics

import (
	"context"
	"fmt"
	"net/netip"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/groupvpn/groupvpn/internal/coop"
	"github.com/groupvpn/groupvpn/internal/ike"
	"github.com/groupvpn/groupvpn/internal/node"
	"github.com/groupvpn/groupvpn/internal/tmd"
)

// Namespace prefixes every metric name.
const Namespace = "groupvpn"

// StateReader is the node: State is what every show command reads
// (*node.Node implements it).
type StateReader interface {
	State(ctx context.Context) (node.Snapshot, error)
}

// SACounterReader is an SA database that counts packets: tmd's client,
// or an in-process data plane (what show crypto ipsec sa reads).
type SACounterReader interface {
	Counters(ctx context.Context) ([]tmd.TEKCounters, *tmd.DataPlaneCounters, error)
}

// DefaultTimeout bounds the reads of one scrape (the node's event loop,
// then tmd).
const DefaultTimeout = 2 * time.Second

// Collector is a prometheus.Collector over a node and, optionally, the
// SA database it installs SAs into. It is unchecked (Describe sends
// nothing): the series depend on the groups configured and the SAs
// installed, which change at run time.
type Collector struct {
	state    StateReader
	sas      SACounterReader // nil: no packet counters
	sections []Section
	timeout  time.Duration
}

// Section is a list of counters another process keeps, read at scrape
// time (a section of show crypto isakmp statistics: the iked broker's,
// tmd's API socket's). Its counters are exported as
// groupvpn_<Name>_<counter>_total, its answer as groupvpn_source_up
// {source="<Name>"}.
type Section struct {
	Name string // snake_case
	Read func(ctx context.Context) ([]ike.Counter, error)
}

// WithSections adds sections to c; call it before c is registered.
func (c *Collector) WithSections(ss ...Section) *Collector {
	c.sections = append(c.sections, ss...)
	return c
}

// NewCollector returns a Collector over st and sas, each left out when
// nil (tmd -metrics has no node).
// timeout bounds each source's read per scrape (<= 0: DefaultTimeout).
func NewCollector(st StateReader, sas SACounterReader, timeout time.Duration) *Collector {
	if timeout <= 0 {
		timeout = DefaultTimeout
	}
	return &Collector{state: st, sas: sas, timeout: timeout}
}

// ForNode is NewCollector over n and the SA database n installs into
// when that database counts packets (tmd, an in-process engine).
func ForNode(n *node.Node, timeout time.Duration) *Collector {
	var sas SACounterReader
	if r, ok := n.Dataplane().(SACounterReader); ok {
		sas = r
	}
	return NewCollector(countsOf{n}, sas, timeout)
}

// countsOf reads a node's state without the KS groups' member lists
// (node.StateCounts): what a scrape exports of them are counts and sums
// ks keeps, and copying 100,000 members held the node's loop for tens of
// milliseconds per scrape (issue 18).
type countsOf struct{ n *node.Node }

// State is n's StateCounts.
func (c countsOf) State(ctx context.Context) (node.Snapshot, error) { return c.n.StateCounts(ctx) }

// LocalSAs adapts an SA database read in this process (tmd's Server) to
// SACounterReader.
type LocalSAs func() ([]tmd.TEKCounters, *tmd.DataPlaneCounters)

// Counters calls f.
func (f LocalSAs) Counters(context.Context) ([]tmd.TEKCounters, *tmd.DataPlaneCounters, error) {
	sas, dp := f()
	return sas, dp, nil
}

// Describe sends nothing: an unchecked collector (see Collector).
func (c *Collector) Describe(chan<- *prometheus.Desc) {}

func name(parts ...string) string { return Namespace + "_" + strings.Join(parts, "_") }

func desc(fqName, help string, labels ...string) *prometheus.Desc {
	return prometheus.NewDesc(fqName, help, labels, nil)
}

var (
	upDesc = desc(name("source_up"), "1 when the source answered this scrape (node: the daemon's event loop; sa_database: the SA database's packet counters), else 0", "source")

	phase1SAsDesc = desc(name("isakmp_sas"), "established phase-1 SAs, all sockets (the rows of show crypto isakmp sa; a key server holds one per member)")

	// CISCO-GDOI-MIB: key server
	memberCountDesc  = desc(name("gdoi_group_members"), "group members registered with this key server (CISCO-GDOI-MIB cgmGdoiGroupMemberCount)", "group")
	rekeysPushedDesc = desc(name("gdoi_ks_rekeys_pushed_total"), "rekeys (GROUPKEY-PUSH) sent by this key server (CISCO-GDOI-MIB cgmGdoiKeyServerRekeysPushed)", "group")
	ksRoleDesc       = desc(name("gdoi_ks_role"), "1 for this key server's role in the group, 0 for the others: primary, secondary, electing (CISCO-GDOI-MIB cgmGdoiKeyServerRole); a KS without redundancy is primary", "group", "role")
	ksRegsDesc       = desc(name("gdoi_ks_registrations_total"), "registrations (GROUPKEY-PULL) served, summed over the members listed (show crypto gdoi ks members)", "group")
	ksAcksMissedDesc = desc(name("gdoi_ks_acks_missed_total"), "unicast rekey acknowledgements missed, summed over the members listed (show crypto gdoi ks members)", "group")
	ksAcksRcvdDesc   = desc(name("gdoi_ks_acks_received_by_members_total"), "unicast rekey acknowledgements received, summed over the members listed (show crypto gdoi ks members)", "group")
	ksActiveTEKsDesc = desc(name("gdoi_ks_active_teks"), "TEKs this key server distributes (rows of CISCO-GDOI-MIB cgmGdoiKsTekPolicyTable)", "group")
	ksKEKRemainDesc  = desc(name("gdoi_ks_kek_remaining_lifetime_seconds"), "seconds until the KEK expires (CISCO-GDOI-MIB cgmGdoiKsKekRemainingLifetime)", "group")
	ksRekeySeqDesc   = desc(name("gdoi_ks_rekey_sequence"), "the sequence number of the last rekey (show crypto gdoi)", "group")
	ksTEKRemainDesc  = desc(name("gdoi_ks_tek_remaining_lifetime_seconds"), "seconds until the TEK expires (CISCO-GDOI-MIB cgmGdoiKsTekRemainingLifetime)", "group", "spi")
	lastRetransDesc  = desc(name("gdoi_group_last_rekey_retransmits"), "datagrams sent again during the last rekey delivery completed (CISCO-GDOI-MIB cgmGdoiGroupLastRekeyRetransmits)", "group")
	lastTookDesc     = desc(name("gdoi_group_last_rekey_time_taken_seconds"), "seconds from the first transmission of the last rekey delivery completed to its last acknowledgement or give-up (CISCO-GDOI-MIB cgmGdoiGroupLastRekeyTimeTaken, there in ms)", "group")
	lastSeqDesc      = desc(name("gdoi_group_last_rekey_sequence"), "the sequence number of the last rekey delivery completed", "group")
	gmRegisteredDesc = desc(name("gdoi_gm_registered"), "1 when this group member is registered with the key server ks (CISCO-GDOI-MIB cgmGdoiGmRegKeyServerIdValue), else 0 (ks empty)", "group", "ks")
	gmRegsDesc       = desc(name("gdoi_gm_registrations_total"), "registrations completed by this group member (show crypto gdoi gm)", "group")
	gmFailuresDesc   = desc(name("gdoi_gm_registration_failures_total"), "registration attempts that failed (show crypto gdoi gm)", "group")
	gmRekeysRcvdDesc = desc(name("gdoi_gm_rekeys_received_total"), "rekeys verified and applied (CISCO-GDOI-MIB cgmGdoiGmRekeysReceived)", "group")
	gmActiveTEKsDesc = desc(name("gdoi_gm_active_teks"), "TEKs installed for the group (CISCO-GDOI-MIB cgmGdoiGmActiveTEKNum)", "group")
	gmRekeySeqDesc   = desc(name("gdoi_gm_rekey_sequence"), "the highest rekey sequence number accepted (show crypto gdoi gm)", "group")
	// Cooperative key servers (show crypto gdoi ks coop).
	coopPriorityDesc    = desc(name("coop_local_priority"), "this key server's COOP priority in the group (local priority)", "group")
	coopPeersDesc       = desc(name("coop_peers"), "peer key servers configured for the group (peer address ipv4)", "group")
	coopReachableDesc   = desc(name("coop_peers_reachable"), "peer key servers heard within the dead interval", "group")
	coopPeerUpDesc      = desc(name("coop_peer_up"), "1 when the peer key server was heard within the dead interval (Peer KS Status: Alive), else 0", "group", "peer")
	coopPeerPrioDesc    = desc(name("coop_peer_priority"), "the priority the peer key server last announced (absent: never heard)", "group", "peer")
	coopPeerVersionDesc = desc(name("coop_peer_version_info"), "1, labelled with the version the peer key server last announced (SPEC V3; absent: never heard)", "group", "peer", "version")
	coopSentDesc        = desc(name("coop_announcements_sent_total"), "COOP announcements sent to the group's peer key servers (Ann msgs sent)", "group")
	coopAcceptedDesc    = desc(name("coop_announcements_accepted_total"), "COOP announcements accepted from the group's peer key servers (Ann msgs recv)", "group")
	coopDroppedDesc     = desc(name("coop_announcements_dropped_total"), "COOP announcements dropped, by reason: replayed (sequence number not above the last accepted), unknown_peer (not a configured peer), invalid (bad role, priority 0, oversized state), incompatible (another major or minor version)", "group", "reason")
	coopUnsentDesc      = desc(name("coop_announcements_unsent_total"), "COOP announcements not sent: the KS-KS SA's sequence numbers are used up", "group")
	coopElectionsDesc   = desc(name("coop_elections_total"), "COOP elections this key server entered", "group")
	coopMembersGenDesc  = desc(name("coop_members_generation"), "the generation of this key server's member list as announced to its peers", "group")
	coopLastSyncDesc    = desc(name("coop_last_sync_timestamp_seconds"), "when this key server last adopted the primary's policy and keys, in Unix seconds (absent: never)", "group")

	saEncapsPktsDesc  = desc(name("ipsec_sa_encaps_packets_total"), "packets encrypted under the SA (show crypto ipsec sa: #pkts encaps)", "group", "spi")
	saEncapsBytesDesc = desc(name("ipsec_sa_encaps_bytes_total"), "bytes encrypted under the SA", "group", "spi")
	saDecapsPktsDesc  = desc(name("ipsec_sa_decaps_packets_total"), "packets decrypted under the SA (show crypto ipsec sa: #pkts decaps)", "group", "spi")
	saDecapsBytesDesc = desc(name("ipsec_sa_decaps_bytes_total"), "bytes decrypted under the SA", "group", "spi")
	saReplayDesc      = desc(name("ipsec_sa_replay_drops_total"), "packets dropped by the anti-replay window (counter mode)", "group", "spi")
	saAuthDesc        = desc(name("ipsec_sa_auth_failures_total"), "packets failing ESP authentication", "group", "spi")
	saTBARDesc        = desc(name("ipsec_sa_tbar_drops_total"), "packets dropped by time-based anti-replay (pseudotime missing or outside the window)", "group", "spi")
)

// Collect reads the sources and sends the metrics. A source that does not
// answer within the timeout is reported by groupvpn_source_up 0 and its
// metrics are left out of this scrape.
func (c *Collector) Collect(ch chan<- prometheus.Metric) {
	if c.state != nil {
		ctx, cancel := context.WithTimeout(context.Background(), c.timeout)
		s, err := c.state.State(ctx)
		cancel()
		up(ch, "node", err == nil)
		if err == nil {
			collectSnapshot(ch, s)
		}
	}
	if c.sas != nil {
		ctx, cancel := context.WithTimeout(context.Background(), c.timeout)
		sas, dp, err := c.sas.Counters(ctx)
		cancel()
		up(ch, "sa_database", err == nil)
		if err == nil {
			collectSAs(ch, sas, dp)
		}
	}
	for _, sec := range c.sections {
		ctx, cancel := context.WithTimeout(context.Background(), c.timeout)
		cs, err := sec.Read(ctx)
		cancel()
		up(ch, sec.Name, err == nil)
		if err == nil {
			counters(ch, sec.Name, cs, nil)
		}
	}
}

func up(ch chan<- prometheus.Metric, source string, ok bool) {
	v := 0.0
	if ok {
		v = 1
	}
	ch <- prometheus.MustNewConstMetric(upDesc, prometheus.GaugeValue, v, source)
}

// emit sends one sample. Names and label values can come from another
// process (tmd's engine counters, iked's, the groups of tmd's SAs): one
// that Prometheus refuses (an invalid name, a label value that is not
// UTF-8) is left out rather than panicking or failing the scrape.
func emit(ch chan<- prometheus.Metric, d *prometheus.Desc, t prometheus.ValueType, v float64, labels ...string) {
	m, err := prometheus.NewConstMetric(d, t, v, labels...)
	if err != nil {
		return
	}
	ch <- m
}

func gauge(ch chan<- prometheus.Metric, d *prometheus.Desc, v float64, labels ...string) {
	emit(ch, d, prometheus.GaugeValue, v, labels...)
}

func counter(ch chan<- prometheus.Metric, d *prometheus.Desc, v float64, labels ...string) {
	emit(ch, d, prometheus.CounterValue, v, labels...)
}

// Bounds on what another process's counter list may add to a scrape.
const (
	maxRemoteCounters = 256
	maxHelp           = 200
)

func help(s string) string {
	if len(s) > maxHelp {
		s = strings.ToValidUTF8(s[:maxHelp], "") + "..."
	}
	return s
}

// spiLabel renders an SPI as show crypto ipsec sa does: 0x and 8 hex digits.
func spiLabel(spi uint32) string { return fmt.Sprintf("0x%08X", spi) }

func seconds(until, now time.Time) float64 {
	if until.IsZero() {
		return 0
	}
	return max(until.Sub(now).Seconds(), 0)
}

func collectSnapshot(ch chan<- prometheus.Metric, s node.Snapshot) {
	// Counted by the node, not copied (issue 18: a key server holds a
	// phase-1 SA per member).
	gauge(ch, phase1SAsDesc, float64(s.Phase1Count))
	for _, g := range s.KS {
		// Counts and sums ks keeps (the snapshot has no member list: a
		// scrape costs the same with 10 or 100,000 members, issue 18).
		regs, missed, acked := g.Registrations, g.AcksMissed, g.AcksReceived
		gauge(ch, memberCountDesc, float64(g.MemberCount), g.Name)
		counter(ch, rekeysPushedDesc, float64(g.Rekeys), g.Name)
		role := coop.Primary
		if st, ok := s.COOP[g.Name]; ok {
			role = st.Role
			collectCOOP(ch, g.Name, st)
		} else if g.Secondary {
			role = coop.Secondary
		}
		for _, r := range []coop.Role{coop.Primary, coop.Secondary, coop.Electing} {
			v := 0.0
			if r == role {
				v = 1
			}
			gauge(ch, ksRoleDesc, v, g.Name, strings.ToLower(r.String()))
		}
		counter(ch, ksRegsDesc, float64(regs), g.Name)
		counter(ch, ksAcksMissedDesc, float64(missed), g.Name)
		counter(ch, ksAcksRcvdDesc, float64(acked), g.Name)
		gauge(ch, ksActiveTEKsDesc, float64(len(g.TEKs)), g.Name)
		gauge(ch, ksKEKRemainDesc, seconds(g.KEKExpire, s.Now), g.Name)
		gauge(ch, ksRekeySeqDesc, float64(g.Seq), g.Name)
		if lr, ok := s.LastRekeys[g.Name]; ok {
			gauge(ch, lastRetransDesc, float64(lr.Retransmits), g.Name)
			gauge(ch, lastTookDesc, lr.Took.Seconds(), g.Name)
			gauge(ch, lastSeqDesc, float64(lr.Seq), g.Name)
		}
		for _, t := range g.TEKs {
			gauge(ch, ksTEKRemainDesc, seconds(t.Expires, s.Now), g.Name, spiLabel(t.SPI))
		}
	}
	teks := map[string]int{}
	for _, t := range s.TEKs {
		teks[t.Group]++
	}
	for _, m := range s.GM {
		ks, reg := "", 0.0
		if m.State == "registered" && m.KS.IsValid() {
			ks, reg = addrLabel(m.KS), 1
		}
		gauge(ch, gmRegisteredDesc, reg, m.Group, ks)
		counter(ch, gmRegsDesc, float64(m.Registrations), m.Group)
		counter(ch, gmFailuresDesc, float64(m.Failures), m.Group)
		counter(ch, gmRekeysRcvdDesc, float64(m.Rekeys.Received), m.Group)
		gauge(ch, gmActiveTEKsDesc, float64(teks[m.Group]), m.Group)
		gauge(ch, gmRekeySeqDesc, float64(m.Seq), m.Group)
	}
	// Every drop counter of show crypto isakmp statistics and show crypto
	// gdoi gm|ks counters, by its stable snake_case name (SPEC S5).
	// The GM counters exported per group above are left out here.
	counters(ch, "isakmp", s.ISAKMPCounters, nil)
	counters(ch, "gdoi_gm", s.GMCounters, perGroupGM)
	counters(ch, "gdoi_ks", s.KSCounters, nil)
	counters(ch, "store", s.StoreCounters, nil)
	counters(ch, "log", s.LogCounters, nil)
}

// collectCOOP sends a cooperative KS group's series (show crypto gdoi ks
// coop). The node's COOPCounters are these counters summed over the
// groups, so they are not exported again.
func collectCOOP(ch chan<- prometheus.Metric, group string, st node.COOPStatus) {
	gauge(ch, coopPriorityDesc, float64(st.Priority), group)
	gauge(ch, coopPeersDesc, float64(len(st.Peers)), group)
	reachable := 0
	for _, p := range st.Peers {
		peer := p.Addr.String()
		up := 0.0
		if p.Reachable {
			up = 1
			reachable++
		}
		gauge(ch, coopPeerUpDesc, up, group, peer)
		if p.Priority != 0 {
			gauge(ch, coopPeerPrioDesc, float64(p.Priority), group, peer)
		}
		if !p.Version.IsZero() {
			gauge(ch, coopPeerVersionDesc, 1, group, peer, p.Version.String())
		}
	}
	gauge(ch, coopReachableDesc, float64(reachable), group)
	counter(ch, coopSentDesc, float64(st.Stats.Sent), group)
	counter(ch, coopAcceptedDesc, float64(st.Stats.Accepted), group)
	counter(ch, coopDroppedDesc, float64(st.Stats.Replayed), group, "replayed")
	counter(ch, coopDroppedDesc, float64(st.Stats.Unknown), group, "unknown_peer")
	counter(ch, coopDroppedDesc, float64(st.Stats.Invalid), group, "invalid")
	counter(ch, coopDroppedDesc, float64(st.Stats.Incompatible), group, "incompatible")
	counter(ch, coopUnsentDesc, float64(st.Stats.Exhausted), group)
	counter(ch, coopElectionsDesc, float64(st.Stats.Elections), group)
	gauge(ch, coopMembersGenDesc, float64(st.MembersGen), group)
	if !st.LastSync.IsZero() {
		gauge(ch, coopLastSyncDesc, float64(st.LastSync.Unix()), group)
	}
}

// perGroupGM are the names of node.GMCounters exported per group (with a
// group label) rather than summed.
var perGroupGM = map[string]bool{"registrations": true, "registration_failures": true, "rekeys_received": true}

func addrLabel(a netip.AddrPort) string { return a.Addr().String() }

// counters sends each counter as groupvpn_<section>_<name>_total.
func counters(ch chan<- prometheus.Metric, section string, cs []ike.Counter, skip map[string]bool) {
	seen := map[string]bool{}
	for _, c := range cs[:min(len(cs), maxRemoteCounters)] {
		if skip[c.Name] || seen[c.Name] {
			continue
		}
		seen[c.Name] = true
		n := strings.TrimPrefix(strings.TrimSuffix(c.Name, "_total"), section+"_")
		d := desc(name(section, n, "total"), help(c.Help))
		counter(ch, d, float64(c.Value))
	}
}

func collectSAs(ch chan<- prometheus.Metric, sas []tmd.TEKCounters, dp *tmd.DataPlaneCounters) {
	type key struct {
		group string
		spi   uint32
	}
	seenSA := map[key]bool{}
	for _, t := range sas {
		if seenSA[key{t.Group, t.SPI}] {
			continue
		}
		seenSA[key{t.Group, t.SPI}] = true
		spi := spiLabel(t.SPI)
		counter(ch, saEncapsPktsDesc, float64(t.EncapsPackets), t.Group, spi)
		counter(ch, saEncapsBytesDesc, float64(t.EncapsBytes), t.Group, spi)
		counter(ch, saDecapsPktsDesc, float64(t.DecapsPackets), t.Group, spi)
		counter(ch, saDecapsBytesDesc, float64(t.DecapsBytes), t.Group, spi)
		counter(ch, saReplayDesc, float64(t.ReplayDrops), t.Group, spi)
		counter(ch, saAuthDesc, float64(t.AuthFailures), t.Group, spi)
		counter(ch, saTBARDesc, float64(t.TBARDrops), t.Group, spi)
	}
	if dp == nil {
		return
	}
	seen := map[string]bool{}
	for _, c := range dp.Counters[:min(len(dp.Counters), maxRemoteCounters)] {
		if seen[c.Name] {
			continue
		}
		seen[c.Name] = true
		d := desc(name("dataplane", strings.TrimSuffix(c.Name, "_total"), "total"), help(c.Help)+" (the forwarding engine's counter)", "device")
		counter(ch, d, float64(c.Value), dp.Device)
	}
}
