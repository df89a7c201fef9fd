package daemon

import (
	"context"
	"fmt"
	"strings"

	"github.com/groupvpn/groupvpn/internal/ctl"
	"github.com/groupvpn/groupvpn/internal/policy"
	"github.com/groupvpn/groupvpn/internal/show"
	"github.com/groupvpn/groupvpn/internal/syslog"
)

// The configuration's logging (logging host, logging buffered) reaches
// isakmpd's syslog.Sinks: SetLogSinks applies the running configuration
// and registers show logging; apply prepares the sinks of a new
// configuration before the node takes it (a destination that cannot be
// opened refuses the whole configuration) and commits them with it.

// sinkConfig is what c asks of the sinks.
func sinkConfig(c *policy.Config) syslog.SinkConfig {
	l := c.Logging
	sc := syslog.SinkConfig{Buffered: l.Buffered, BufLevel: policy.Severity(l.BufferedLevel, 7),
		Trap: policy.Severity(l.Trap, 6), Facility: policy.Facility(l.Facility)}
	for _, h := range l.Hosts {
		sc.Dests = append(sc.Dests, h.Dest())
	}
	return sc
}

// SetLogSinks makes s follow the configuration: the running one now, each
// one applied later (reload, commit).
func (d *Daemon) SetLogSinks(s *syslog.Sinks) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	c := d.config
	ch, err := s.Prepare(sinkConfig(c))
	if err != nil {
		return fmt.Errorf("logging: %w", err)
	}
	if err := ch.Commit(); err != nil {
		return fmt.Errorf("logging: %w", err)
	}
	d.logSinks = s
	return nil
}

// prepareLogging opens what new's logging needs; nil without sinks.
func (d *Daemon) prepareLogging(new *policy.Config) (*syslog.Change, error) {
	d.mu.Lock()
	s := d.logSinks
	d.mu.Unlock()
	if s == nil {
		return nil, nil
	}
	ch, err := s.Prepare(sinkConfig(new))
	if err != nil {
		return nil, &NotAppliedError{Reasons: []string{"logging: " + err.Error()}}
	}
	return ch, nil
}

// registerLogging registers show logging (with every daemon, so that a
// second registration of it fails every test at once).
func registerLogging(d *Daemon) {
	d.Ctl.HandleReadOnly("show logging", "the logging configuration and the buffered messages (logging buffered)", d.showLogging)
}

func (d *Daemon) showLogging(_ context.Context, _ *ctl.Request) (*ctl.Reply, error) {
	d.mu.Lock()
	s := d.logSinks
	d.mu.Unlock()
	var b strings.Builder
	b.WriteString("Syslog logging: enabled\n")
	if s == nil { // a daemon without sinks (tests, the lab)
		b.WriteString("    Buffer logging:  disabled\n")
		return &ctl.Reply{Text: b.String(), Data: show.LoggingView(d.Node.Now(), show.Logging{})}, nil
	}
	lines, size := s.Buffered()
	bufLevel, trap := s.Levels()
	data := show.LoggingView(d.Node.Now(), show.Logging{Sinks: true, BufferSize: size, BufferLevel: bufLevel, Lines: lines,
		Trap: trap, Facility: policy.FacilityName(s.Facility()), Hosts: s.Hosts(), Sent: s.Sent(), HostDrops: s.Drops()})
	if size > 0 {
		fmt.Fprintf(&b, "    Buffer logging:  level %s, %d messages in the buffer\n", policy.Severities[bufLevel], len(lines))
	} else {
		b.WriteString("    Buffer logging:  disabled\n")
	}
	fmt.Fprintf(&b, "    Trap logging:  level %s, facility %s, %d message lines logged\n", policy.Severities[trap], policy.FacilityName(s.Facility()), s.Sent())
	for _, h := range s.Hosts() {
		fmt.Fprintf(&b, "    Logging to %s (rfc5424)\n", strings.TrimPrefix(h, "udp://"))
	}
	fmt.Fprintf(&b, "    Messages not sent to a host: %d\n", s.Drops())
	if size > 0 {
		fmt.Fprintf(&b, "\nLog Buffer (%d bytes):\n", size)
		for _, l := range lines {
			b.WriteString(l + "\n")
		}
	}
	return &ctl.Reply{Text: b.String(), Data: data}, nil
}
