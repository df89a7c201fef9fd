package ctl

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strings"
	"sync"
	"text/tabwriter"
	"time"
)

// Configuration mode (`configure terminal`, SPEC O2).
//
// The server keeps a configuration session per `configure terminal`; the
// client that opened it sends the configuration-mode lines with the
// session's id until the session ends:
//
//	> {"v":1,"id":1,"cmd":"conf t"}
//	< {"v":1,"id":1,"ok":true,"text":"Enter configuration commands, one per line.  End with CNTL/Z.\n",
//	   "data":{"config_session":"S","config_mode":"(config)"}}
//	> {"v":1,"id":2,"cmd":"configure session S","input":"crypto gdoi group GET"}
//	< {"v":1,"id":2,"ok":true,"data":{"config_session":"S","config_mode":"(config-gdoi-group)"}}
//	> {"v":1,"id":3,"cmd":"configure session S","input":"end"}
//	< {"v":1,"id":3,"ok":true,"data":{"config_session":"","config_mode":""}}
//
// A refused line is ok:false and leaves the session in its mode. The line
// travels in "input", so it is never taken for a command or filtered.
// `configure session S complete` with the line typed so far as input
// answers completion candidates (data: Completion) for the session's mode.
// Besides the daemon's configuration commands the session knows `do LINE`
// (run an EXEC command) and `abort` (leave without committing).

// ConfigSession is one operator's configuration mode, supplied by the
// daemon (HandleConfigure). The server serializes the calls of a session.
type ConfigSession interface {
	// Line runs one configuration-mode line and returns text for the
	// operator and the mode prompt after it ("(config)",
	// "(config-gdoi-group)", ...), or "" when configuration mode has ended
	// (end, exit at the top). An error refuses the line: the session stays.
	Line(ctx context.Context, line string) (text, mode string, err error)
	// Mode is the current mode prompt.
	Mode() string
	// Commands lists the first words of the current mode's commands.
	Commands() []string
}

// ConfigGrammar is implemented by a ConfigSession that describes the
// commands of its current mode and the modes enclosing it: the server then
// takes keywords abbreviated to a unique prefix (expanding them before
// Line), answers IOS's errors, and lists the candidates of any word for
// `?` and TAB with their help.
type ConfigGrammar interface {
	Grammar() *Grammar
}

// ConfigState is the data of `configure terminal` and of every successful
// `configure session` reply: the session id and the mode prompt, both ""
// once configuration mode has ended.
type ConfigState struct {
	Session string `json:"config_session"`
	Mode    string `json:"config_mode"`
}

// ParseConfigState returns the configuration state a response carries, if
// it carries one.
func ParseConfigState(resp *WireResponse) (ConfigState, bool) {
	var st struct {
		Session *string `json:"config_session"`
		Mode    string  `json:"config_mode"`
	}
	if resp == nil || !resp.OK || len(resp.Data) == 0 || resp.Data[0] != '{' {
		return ConfigState{}, false
	}
	if err := json.Unmarshal(resp.Data, &st); err != nil || st.Session == nil {
		return ConfigState{}, false
	}
	return ConfigState{Session: *st.Session, Mode: st.Mode}, true
}

// ConfigIdle is how long an unused configuration session is kept; after it
// the session is dropped, uncommitted. At most MaxConfigSessions are kept;
// a new one drops the longest idle.
const (
	ConfigIdle        = time.Hour
	MaxConfigSessions = 32
)

// CmdConfigSession is the command that carries a configuration-mode line
// (in "input") for session WORD.
const CmdConfigSession = "configure session"

// errNoConfigSession starts the error for an unknown session id; clients
// leave configuration mode on it.
const errNoConfigSession = "% No such configuration session"

// IsNoConfigSession reports whether a failed response says the session is
// gone (ended, expired or the daemon restarted).
func IsNoConfigSession(resp *WireResponse) bool {
	return resp != nil && !resp.OK && strings.HasPrefix(resp.Error, errNoConfigSession)
}

// EnterConfig is what `configure terminal` prints, as on IOS.
const EnterConfig = "Enter configuration commands, one per line.  End with CNTL/Z.\n"

type configEntry struct {
	mu   sync.Mutex
	sess ConfigSession
	used time.Time
}

type configSessions struct {
	mu sync.Mutex
	m  map[string]*configEntry
}

func (cs *configSessions) add(sess ConfigSession) string {
	cs.mu.Lock()
	defer cs.mu.Unlock()
	cs.expire()
	for len(cs.m) >= MaxConfigSessions {
		var oldest string
		for id, e := range cs.m {
			if oldest == "" || e.used.Before(cs.m[oldest].used) {
				oldest = id
			}
		}
		delete(cs.m, oldest)
	}
	id := rand.Text()
	cs.m[id] = &configEntry{sess: sess, used: time.Now()}
	return id
}

func (cs *configSessions) get(id string) *configEntry {
	cs.mu.Lock()
	defer cs.mu.Unlock()
	cs.expire()
	e := cs.m[id]
	if e != nil {
		e.used = time.Now()
	}
	return e
}

func (cs *configSessions) drop(id string) {
	cs.mu.Lock()
	delete(cs.m, id)
	cs.mu.Unlock()
}

func (cs *configSessions) expire() {
	for id, e := range cs.m {
		if time.Since(e.used) > ConfigIdle {
			delete(cs.m, id)
		}
	}
}

// HandleConfigure registers `configure terminal`, which starts a
// configuration session made by open, and `configure session WORD
// [complete]`, which carries its lines (see ConfigSession and the protocol
// in docs/cli.md).
func (s *Server) HandleConfigure(open func(ctx context.Context) (ConfigSession, error)) {
	store := &configSessions{m: map[string]*configEntry{}}
	s.Handle("configure terminal", "Configure from the terminal (configuration mode; end with end or Ctrl-Z)",
		func(ctx context.Context, req *Request) (*Reply, error) {
			sess, err := open(ctx)
			if err != nil {
				return nil, err
			}
			id := store.add(sess)
			return &Reply{Text: EnterConfig, Data: ConfigState{Session: id, Mode: sess.Mode()}}, nil
		})
	s.Handle(CmdConfigSession+" WORD [complete]", "(protocol) the request's input is a line of configuration session WORD; with complete: its completions",
		func(ctx context.Context, req *Request) (*Reply, error) {
			id := req.Args["session"]
			e := store.get(id)
			if e == nil {
				return nil, fmt.Errorf("%s %q: it has ended, was idle for more than %v, or the daemon restarted; enter configure terminal again", errNoConfigSession, id, ConfigIdle)
			}
			e.mu.Lock()
			defer e.mu.Unlock()
			if req.Has("complete") {
				return s.configComplete(e.sess, req.Input), nil
			}
			line := strings.TrimSpace(req.Input)
			if strings.ContainsAny(line, "\n\r") {
				return nil, fmt.Errorf("ctl: a configuration line is one line")
			}
			// A first word the grammar does not know still goes to the
			// session as typed (it may take lines the grammar does not
			// describe); if the session refuses it too, the error is IOS's,
			// with the marker, followed by the session's reason.
			var invalid *parseError
			if g, ok := e.sess.(ConfigGrammar); ok && line != "" && line[0] != '!' {
				if w := strings.Fields(line); !strings.EqualFold(w[0], "do") {
					x, err := g.Grammar().Expand(line)
					switch {
					case err == nil:
						line = x
					case errors.As(err, &invalid) && invalid.msg == msgInvalid:
					default:
						return nil, err
					}
				}
			}
			state := func() ConfigState { return ConfigState{Session: id, Mode: e.sess.Mode()} }
			if w := strings.Fields(line); len(w) > 0 && strings.EqualFold(w[0], "do") {
				rest := strings.TrimSpace(line[len(w[0]):])
				r := s.NewSession().Do(ctx, &WireRequest{V: Version, Cmd: rest})
				if !r.OK {
					return &Reply{Text: r.Text}, fmt.Errorf("%s", r.Error)
				}
				return &Reply{Text: r.Text, Data: state()}, nil
			}
			if strings.EqualFold(line, "abort") {
				store.drop(id)
				return &Reply{Text: "% Configuration changes discarded\n", Data: ConfigState{}}, nil
			}
			text, mode, err := e.sess.Line(context.WithValue(ctx, requestKey{}, req), line)
			if err != nil {
				if pe := (*PromptError)(nil); errors.As(err, &pe) {
					return &Reply{Text: text}, err // asked again with the answer (RequestOf)
				}
				if invalid != nil {
					err = &parseError{invalid.msg + "\n" + err.Error(), invalid.pos}
				}
				return &Reply{Text: text}, err
			}
			if mode == "" {
				store.drop(id)
				return &Reply{Text: text, Data: ConfigState{}}, nil
			}
			return &Reply{Text: text, Data: ConfigState{Session: id, Mode: mode}}, nil
		})
}

// configComplete lists the candidates for the word being typed in
// configuration mode: the mode's commands (also after `no`), or EXEC
// commands after `do`.
func (s *Server) configComplete(sess ConfigSession, line string) *Reply {
	var comp Completion
	words := strings.Fields(line)
	after := len(line) > 0 && isSpace(line[len(line)-1])
	first := len(words) == 0 || (len(words) == 1 && !after)
	g, hasGrammar := sess.(ConfigGrammar)
	switch {
	case len(words) > 0 && strings.EqualFold(words[0], "do") && !first:
		i := strings.Index(strings.ToLower(line), "do") + 2
		var err error
		comp.Candidates, comp.Partial, err = completeCommand(s.commands(), s.keywordHelp(), strings.TrimLeft(line[i:], " \t"))
		if err != nil {
			comp.Error = err.Error()
		}
	case hasGrammar:
		var err error
		comp.Candidates, comp.Partial, err = g.Grammar().Complete(line)
		if err != nil {
			comp.Error = err.Error()
		}
	case first || (len(words) == 1 && strings.EqualFold(words[0], "no")) || (len(words) == 2 && !after && strings.EqualFold(words[0], "no")):
		if !after && len(words) > 0 {
			comp.Partial = words[len(words)-1]
		}
		for _, w := range sess.Commands() {
			if len(words) > 0 && strings.EqualFold(words[0], "no") && !first && (w == "no" || w == "do" || w == "end" || w == "exit" || w == "abort") {
				continue
			}
			if strings.HasPrefix(w, strings.ToLower(comp.Partial)) {
				comp.Candidates = append(comp.Candidates, Candidate{Word: w, Keyword: true})
			}
		}
	}
	if comp.Candidates == nil {
		comp.Candidates = []Candidate{}
	}
	sort.Slice(comp.Candidates, func(i, j int) bool { return comp.Candidates[i].Word < comp.Candidates[j].Word })
	var b bytes.Buffer
	tw := tabwriter.NewWriter(&b, 0, 0, 2, ' ', 0)
	for _, c := range comp.Candidates {
		fmt.Fprintf(tw, "  %s\t%s\n", c.Word, c.Help)
	}
	tw.Flush()
	switch {
	case comp.Error != "":
		b.Reset()
		b.WriteString(comp.Error + "\n")
	case len(comp.Candidates) == 0:
		b.WriteString("% Unrecognized command\n")
	}
	return &Reply{Text: b.String(), Data: comp}
}
