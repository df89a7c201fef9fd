package daemon

import (
	"context"
	"crypto"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/groupvpn/groupvpn/internal/ctl"
	"github.com/groupvpn/groupvpn/internal/keystore"
	"github.com/groupvpn/groupvpn/internal/policy"
	"github.com/groupvpn/groupvpn/internal/show"
	"github.com/groupvpn/groupvpn/internal/syslog"
)

// The key store on the CLI (issue 14 item 2): IOS's crypto key commands,
// in EXEC mode and, as on IOS, in configuration mode, where they act at
// once and are not part of the configuration (configSession.Line).
//
//	crypto key generate rsa [general-keys] label X [exportable] [modulus N] [exportable] [redundancy]
//	crypto key generate ec keysize {256 | 384} [exportable] label X [exportable]
//	crypto key zeroize {rsa | ec} [X]
//	crypto key export {rsa | ec} X pem terminal [3des]
//	crypto key import {rsa | ec} X pem {terminal | url PATH}
//	show crypto key mypubkey {rsa | ec | all} [X]
//
// All but show change state: a read-only peer is refused them (and so
// never sees a private key: export prints it) and each run is audited
// (%PARSER-5-CFGLOG_LOGGEDCMD); the store logs IOS's
// %CRYPTO_ENGINE-5-KEY_ADDITION, KEY_REPLACE and KEY_DELETED besides.

// keyCommands serve one key store.
type keyCommands struct {
	st      *keystore.Store
	log     *slog.Logger
	rand    io.Reader
	running func() *policy.Config // nil: no daemon (KeyServer)
	mu      sync.Mutex            // one change of the store at a time
	srv     *ctl.Server           // the same commands, run by configuration sessions (ctl.Server.Run)
}

// keyGrammar is the key commands' syntax in configuration mode (`?`,
// TAB, abbreviations).
var keyGrammar = []ctl.GrammarCommand{
	{Syntax: "crypto key generate rsa [general-keys] label LABEL [exportable] [modulus MODULUS] [exportable] [redundancy]", Help: "Generate an RSA key pair into the key store (not part of the configuration)"},
	{Syntax: "crypto key generate ec keysize {256 | 384} [exportable] label LABEL [exportable]", Help: "Generate an EC key pair into the key store (not part of the configuration)"},
	{Syntax: "crypto key zeroize {rsa | ec} [LABEL]", Help: "Remove key pairs from the key store"},
	{Syntax: "crypto key export {rsa | ec} LABEL pem terminal [3des]", Help: "Print a stored key pair in PEM (the private key too; 3des: encrypted, for IOS)"},
	{Syntax: "crypto key import {rsa | ec} LABEL pem {terminal | url PATH}", Help: "Store a PEM key pair pasted or read from a file"},
}

// ServeKeyStore makes st the daemon's key store on the CLI: the crypto
// key commands and show crypto key mypubkey. The configuration is parsed
// against the same store by its caller (policy.Options.KeyStore).
func (d *Daemon) ServeKeyStore(st *keystore.Store) {
	k := newKeyCommands(st, d.log, d.Config)
	d.mu.Lock()
	d.keys = k
	d.mu.Unlock()
	k.register(d.Ctl)
	k.register(k.srv)
}

// KeyServer is a control server with the key store's commands only, for
// `groupvpn key`: the keys a key server's configuration names are made
// before the daemon can start with it.
func KeyServer(st *keystore.Store, logger *slog.Logger) *ctl.Server {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	k := newKeyCommands(st, logger, nil)
	k.register(k.srv)
	k.srv.HandleTerminal()
	return k.srv
}

func newKeyCommands(st *keystore.Store, logger *slog.Logger, running func() *policy.Config) *keyCommands {
	return &keyCommands{st: st, log: logger, rand: rand.Reader, running: running, srv: ctl.NewServer(logger)}
}

// register adds the key commands to srv.
func (k *keyCommands) register(srv *ctl.Server) {
	srv.HandleHelp("crypto key", "Long term key operations")
	srv.HandleHelp("crypto key generate", "Generate new keys into the key store")
	srv.HandleHelp("crypto key zeroize", "Remove keys from the key store")
	srv.HandleHelp("crypto key export", "Export keys")
	srv.HandleHelp("crypto key import", "Import keys")
	// IOS's keywords in the orders IOS configurations write them:
	// exportable (every stored key is) before or after the modulus,
	// redundancy (no standby route processor here) last.
	srv.Handle("crypto key generate rsa [general-keys] label WORD [exportable] [modulus NUMBER] [redundancy]", "Generate an RSA key pair into the key store", k.generateRSA)
	srv.Handle("crypto key generate rsa [general-keys] label WORD modulus NUMBER exportable [redundancy]", "Generate an RSA key pair into the key store", k.generateRSA)
	srv.Handle("crypto key generate ec keysize NUMBER [exportable] label WORD [exportable]", "Generate an EC key pair (keysize 256 or 384) into the key store", k.generateEC)
	srv.Handle("crypto key zeroize rsa [label=WORD]", "Remove RSA key pairs from the key store", k.zeroize("rsa"))
	srv.Handle("crypto key zeroize ec [label=WORD]", "Remove EC key pairs from the key store", k.zeroize("ec"))
	srv.Handle("crypto key export rsa label=WORD pem terminal [3des]", "Print an RSA key pair in PEM, private key included (owner only; 3des: encrypted for IOS, the passphrase asked)", k.export("rsa"))
	srv.Handle("crypto key export ec label=WORD pem terminal [3des]", "Print an EC key pair in PEM, private key included (owner only; 3des: encrypted for IOS, the passphrase asked)", k.export("ec"))
	srv.Handle("crypto key import rsa label=WORD pem terminal", "Store an RSA key pair pasted in PEM", k.importKey("rsa"))
	srv.Handle("crypto key import ec label=WORD pem terminal", "Store an EC key pair pasted in PEM", k.importKey("ec"))
	srv.Handle("crypto key import rsa label=WORD pem url WORD", "Store an RSA key pair read from a PEM file (the daemon reads it)", k.importKey("rsa"))
	srv.Handle("crypto key import ec label=WORD pem url WORD", "Store an EC key pair read from a PEM file (the daemon reads it)", k.importKey("ec"))
	srv.HandleHelp("show crypto key", "Long term key operations")
	srv.HandleReadOnly("show crypto key mypubkey rsa [label=WORD]", "The router's RSA public keys (key store)", k.show("rsa"))
	srv.HandleReadOnly("show crypto key mypubkey ec [label=WORD]", "The router's EC public keys (key store)", k.show("ec"))
	srv.HandleReadOnly("show crypto key mypubkey all", "The router's public keys (key store)", k.show(""))
}

// keyCommands returns the key store's commands, nil without one.
func (d *Daemon) keyCommands() *keyCommands {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.keys
}

// isKeyCommand reports whether a configuration-mode line is one of the
// key store's commands (which act at once and are not configuration);
// `crypto key import {rsa | ec} X file PATH` is configuration.
func isKeyCommand(line string) bool {
	w := strings.Fields(strings.ToLower(line))
	if len(w) < 3 || w[0] != "crypto" || w[1] != "key" {
		return false
	}
	switch w[2] {
	case "generate", "zeroize", "export":
		return true
	case "import":
		return len(w) >= 5 && w[4] == "pem"
	}
	return false
}

// configLine runs a key command typed in configuration mode: its
// questions are asked through the session (ctl.RequestOf).
func (k *keyCommands) configLine(ctx context.Context, line string) (string, error) {
	var answers []string
	if r, ok := ctl.RequestOf(ctx); ok {
		answers = r.Answers
	}
	reply, err := k.srv.Run(ctx, line, answers, "")
	text := ""
	if reply != nil {
		text = reply.Text
	}
	return text, err
}

func badLabel(err error) error { return fmt.Errorf("%% %v", err) }

// confirmReplace asks before a key of label is replaced, as IOS does; ok
// false: the operator said no.
func (k *keyCommands) confirmReplace(req *ctl.Request, label string) (bool, error) {
	if !k.st.Exists(label) {
		return true, nil
	}
	what := "keys"
	if old, err := k.st.Get(label); err == nil {
		what = keystore.Upper(old.Type) + " keys"
	}
	return req.Confirm(fmt.Sprintf("%% You already have %s defined named %s.\n%% Do you really want to replace them? [yes/no]: ", what, label))
}

// inUse lists the key-server groups of the running configuration whose
// rekeys the stored key label signs.
func (k *keyCommands) inUse(label string) []string {
	if k.running == nil {
		return nil
	}
	var out []string
	for _, g := range k.running().KSGroups() {
		if rk := g.Server.RekeyKey; rk != nil && rk.Store != "" && rk.Label == label {
			out = append(out, g.Name)
		}
	}
	return out
}

// runningNote is what the operator is told when a stored key the running
// key server signs with changes: the node keeps the key it loaded.
func (k *keyCommands) runningNote(label string) string {
	groups := k.inUse(label)
	if len(groups) == 0 {
		return ""
	}
	return fmt.Sprintf("%% Key %s signs the rekeys of group %s: the running key server keeps the key it loaded until the configuration is reloaded (refresh -s isakmpd, SIGHUP) or changed (configure terminal ... end).\n%% After that, the next rekey announces the new key to the members (in a new KEK), signed with the old key they hold, and the rekeys after it are signed with the new one; the other key servers of the group need the same key (crypto key export/import).\n", label, strings.Join(groups, ", "))
}

func (k *keyCommands) generateRSA(ctx context.Context, req *ctl.Request) (*ctl.Reply, error) {
	label := req.Args["label"]
	if err := keystore.ValidLabel(label); err != nil {
		return nil, badLabel(err)
	}
	mod := req.Args["modulus"]
	if !req.Has("modulus") {
		a, err := req.Ask(fmt.Sprintf("The name for the keys will be: %s\nChoose the size of the key modulus in the range of %d to %d for your\n  General Purpose Keys. Choosing a key modulus greater than %d may take\n  a few seconds.\n\nHow many bits in the modulus [%d]: ", label, keystore.MinRSABits, keystore.MaxRSABits, keystore.MinRSABits, keystore.MinRSABits))
		if err != nil {
			return nil, err
		}
		if mod = strings.TrimSpace(a); mod == "" {
			mod = strconv.Itoa(keystore.MinRSABits)
		}
	}
	bits, err := strconv.Atoi(mod)
	if err != nil || bits < 0 {
		return nil, fmt.Errorf("%% Invalid modulus %q: a number of bits, %d to %d", mod, keystore.MinRSABits, keystore.MaxRSABits)
	}
	if err := keystore.CheckSize("rsa", bits); err != nil {
		return nil, err // the size is refused: say why before asking anything else
	}
	return k.generate(req, "rsa", label, bits)
}

func (k *keyCommands) generateEC(ctx context.Context, req *ctl.Request) (*ctl.Reply, error) {
	label := req.Args["label"]
	if err := keystore.ValidLabel(label); err != nil {
		return nil, badLabel(err)
	}
	bits, err := strconv.Atoi(req.Args["keysize"])
	if err != nil {
		bits = -1
	}
	if err := keystore.CheckSize("ec", bits); err != nil {
		return nil, err
	}
	return k.generate(req, "ec", label, bits)
}

func (k *keyCommands) generate(req *ctl.Request, typ, label string, bits int) (*ctl.Reply, error) {
	ok, err := k.confirmReplace(req, label)
	if err != nil {
		return nil, err
	}
	if !ok {
		return &ctl.Reply{Text: fmt.Sprintf("%% Keys named %s kept; nothing generated\n", label)}, nil
	}
	start := time.Now()
	signer, err := keystore.Generate(typ, bits, k.rand)
	if err != nil {
		return nil, err
	}
	key, replaced, err := k.put(label, signer)
	if err != nil {
		return nil, err
	}
	var b strings.Builder
	fmt.Fprintf(&b, "The name for the keys will be: %s\n\n", label)
	if typ == "rsa" {
		fmt.Fprintf(&b, "%% The key modulus size is %d bits\n%% Generating %d bit RSA keys, keys will be exportable...\n", bits, bits)
	} else {
		fmt.Fprintf(&b, "%% Generating an EC key pair on curve %s, keys will be exportable...\n", strings.TrimPrefix(key.Describe(), "EC "))
	}
	fmt.Fprintf(&b, "[OK] (elapsed time was %d seconds)\n", int(time.Since(start).Round(time.Second)/time.Second))
	if replaced {
		b.WriteString(k.runningNote(label))
	}
	return &ctl.Reply{Text: b.String(), Data: keyData(key, k.st)}, nil
}

// put stores a key and logs IOS's KEY_ADDITION or KEY_REPLACE.
func (k *keyCommands) put(label string, signer crypto.Signer) (*keystore.Key, bool, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	replaced := k.st.Exists(label)
	key, err := k.st.Put(label, signer)
	if err != nil {
		return nil, false, fmt.Errorf("%% %v", err)
	}
	if replaced {
		syslog.LogFacility(k.log, "CRYPTO_ENGINE", syslog.Notice, "KEY_REPLACE", "A key named %s has been replaced by crypto config with new key data", label)
	} else {
		syslog.LogFacility(k.log, "CRYPTO_ENGINE", syslog.Notice, "KEY_ADDITION", "A key named %s has been generated or imported by crypto config", label)
	}
	return key, replaced, nil
}

func (k *keyCommands) zeroize(typ string) ctl.Handler {
	return func(ctx context.Context, req *ctl.Request) (*ctl.Reply, error) {
		var labels []string
		label, one := req.Args["label"]
		if one {
			if err := keystore.ValidLabel(label); err != nil {
				return nil, badLabel(err)
			}
			key, err := k.st.Get(label)
			switch {
			case errors.Is(err, keystore.ErrNotFound):
				return nil, fmt.Errorf("%% No %s keys named %s in the key store %s", keystore.Upper(typ), label, k.st.Dir())
			case err == nil && key.Type != typ:
				return nil, fmt.Errorf("%% Keys named %s are %s keys, not %s (crypto key zeroize %s %s)", label, keystore.Upper(key.Type), keystore.Upper(typ), key.Type, label)
			}
			// A damaged file (err != nil) may be removed too.
			labels = []string{label}
		} else {
			keys, _ := k.st.List()
			for _, key := range keys {
				if key.Type == typ {
					labels = append(labels, key.Label)
				}
			}
			if len(labels) == 0 {
				return &ctl.Reply{Text: fmt.Sprintf("%% No %s keys in the key store %s\n", keystore.Upper(typ), k.st.Dir())}, nil
			}
		}
		var q strings.Builder
		if one {
			fmt.Fprintf(&q, "%% Keys to be removed are named '%s'.\n", label)
		} else {
			fmt.Fprintf(&q, "%% All %s keys will be removed: %s.\n", keystore.Upper(typ), strings.Join(labels, ", "))
		}
		for _, l := range labels {
			if gs := k.inUse(l); len(gs) > 0 {
				fmt.Fprintf(&q, "%% Key %s signs the rekeys of group %s: the running key server keeps it in memory, but a restart or reload will be refused until a key named %s is generated or imported again.\n", l, strings.Join(gs, ", "), l)
			}
		}
		q.WriteString("Do you really want to remove these keys? [yes/no]: ")
		ok, err := req.Confirm(q.String())
		if err != nil {
			return nil, err
		}
		if !ok {
			return &ctl.Reply{Text: "% Keys kept\n"}, nil
		}
		k.mu.Lock()
		defer k.mu.Unlock()
		var b strings.Builder
		for _, l := range labels {
			if err := k.st.Delete(l); err != nil {
				return &ctl.Reply{Text: b.String()}, fmt.Errorf("%% %v", err)
			}
			syslog.LogFacility(k.log, "CRYPTO_ENGINE", syslog.Notice, "KEY_DELETED", "A key named %s has been removed from key storage", l)
			fmt.Fprintf(&b, "%% Keys named %s removed\n", l)
		}
		return &ctl.Reply{Text: b.String()}, nil
	}
}

// getTyped reads a stored key that must be of typ.
func (k *keyCommands) getTyped(typ, label string) (*keystore.Key, error) {
	if err := keystore.ValidLabel(label); err != nil {
		return nil, badLabel(err)
	}
	key, err := k.st.Get(label)
	switch {
	case errors.Is(err, keystore.ErrNotFound):
		return nil, fmt.Errorf("%% No %s keys named %s in the key store %s", keystore.Upper(typ), label, k.st.Dir())
	case err != nil:
		return nil, fmt.Errorf("%% %v", err)
	case key.Type != typ:
		return nil, fmt.Errorf("%% Keys named %s are %s keys, not %s", label, keystore.Upper(key.Type), keystore.Upper(typ))
	}
	return key, nil
}

// export prints a key pair: its public key and its private key, PKCS#8
// PEM, unencrypted (the control socket is the owner's: a read-only peer
// is refused the command).
func (k *keyCommands) export(typ string) ctl.Handler {
	return func(ctx context.Context, req *ctl.Request) (*ctl.Reply, error) {
		key, err := k.getTyped(typ, req.Args["label"])
		if err != nil {
			return nil, err
		}
		pub, err := keystore.PublicPEM(key.Public())
		if err != nil {
			return nil, err
		}
		var priv []byte
		if req.Has("3des") {
			// For IOS's crypto key import ... pem terminal PASSPHRASE: the
			// passphrase is asked (twice), never on the logged command line.
			p1, err := req.Ask("Passphrase: ")
			if err != nil {
				return nil, err
			}
			p2, err := req.Ask("Passphrase (again): ")
			if err != nil {
				return nil, err
			}
			switch {
			case p1 != p2:
				return nil, errors.New("% The passphrases differ; nothing exported")
			case len(p1) < 8:
				return nil, errors.New("% A passphrase of at least 8 characters is needed; nothing exported")
			}
			priv, err = keystore.EncryptedPEM(key.Signer, []byte(p1), k.rand)
			if err != nil {
				return nil, err
			}
		} else if priv, err = keystore.PrivatePEM(key.Signer); err != nil {
			return nil, err
		}
		text := fmt.Sprintf("%% Key name: %s\n   Usage: %s\nKey data:\n%s%s", key.Label, usage(key.Type), pub, priv)
		return &ctl.Reply{Text: text, Data: map[string]string{"label": key.Label, "type": key.Type, "public_key_pem": string(pub), "private_key_pem": string(priv)}}, nil
	}
}

// maxPEMLines bounds a key pasted line by line (a 4096-bit RSA key in
// PKCS#8 PEM is 52 lines, with its public key 66).
const maxPEMLines = 100

// importKey stores a key pair given in PEM: pasted (each line an answer
// to a prompt, until "quit" or the private key's END line), in the
// request's input (a program), or read from a file by the daemon.
func (k *keyCommands) importKey(typ string) ctl.Handler {
	return func(ctx context.Context, req *ctl.Request) (*ctl.Reply, error) {
		label := req.Args["label"]
		if err := keystore.ValidLabel(label); err != nil {
			return nil, badLabel(err)
		}
		var text []byte
		switch {
		case req.Has("url"):
			path := strings.TrimPrefix(req.Args["url"], "file:")
			b, err := keystore.ReadPEMFile(path)
			if err != nil {
				return nil, fmt.Errorf("%% Cannot read %s: %v (the daemon reads the file: give an absolute path)", path, err)
			}
			text = b
		case req.Input != "":
			if len(req.Input) > keystore.MaxKeyFile {
				return nil, fmt.Errorf("%% PEM text larger than %d octets", keystore.MaxKeyFile)
			}
			text = []byte(req.Input)
		default:
			var lines []string
			size := 0
			prompt := "% Enter the PEM-formatted private key (PKCS#8, PKCS#1 or SEC 1; a PUBLIC KEY block before it is skipped).\n% End with the private key's -----END line or \"quit\" on a line by itself.\n "
			for {
				a, err := req.Ask(prompt)
				if err != nil {
					return nil, err
				}
				prompt = " "
				line := strings.TrimSpace(a)
				if line == "quit" {
					break
				}
				lines = append(lines, line)
				size += len(line) + 1
				if len(lines) > maxPEMLines || size > keystore.MaxKeyFile {
					return nil, fmt.Errorf("%% More than %d lines or %d octets pasted: not a key; nothing imported", maxPEMLines, keystore.MaxKeyFile)
				}
				if strings.HasPrefix(line, "-----END ") && strings.HasSuffix(line, "PRIVATE KEY-----") {
					break
				}
			}
			text = []byte(strings.Join(lines, "\n") + "\n")
		}
		signer, err := keystore.ParsePrivateKey(text)
		if errors.Is(err, keystore.ErrEncrypted) {
			// As IOS exports it (3des PASSPHRASE): the passphrase is asked,
			// never on the command line (which is logged).
			pass, aerr := req.Ask("% The private key is encrypted.\nPassphrase: ")
			if aerr != nil {
				return nil, aerr
			}
			signer, err = keystore.ParsePrivateKeyPassphrase(text, []byte(pass))
		}
		if err != nil {
			return nil, fmt.Errorf("%% Import of %s keys named %s failed: %v", keystore.Upper(typ), label, err)
		}
		if got := keystore.Kind(signer); got != typ {
			return nil, fmt.Errorf("%% Import of %s keys named %s failed: the PEM key is an %s key (crypto key import %s %s ...)", keystore.Upper(typ), label, keystore.Upper(got), got, label)
		}
		ok, err := k.confirmReplace(req, label)
		if err != nil {
			return nil, err
		}
		if !ok {
			return &ctl.Reply{Text: fmt.Sprintf("%% Keys named %s kept; nothing imported\n", label)}, nil
		}
		key, replaced, err := k.put(label, signer)
		if err != nil {
			return nil, err
		}
		out := fmt.Sprintf("%% Key pair imported: %s (%s)\n", label, key.Describe())
		if replaced {
			out += k.runningNote(label)
		}
		return &ctl.Reply{Text: out, Data: keyData(key, k.st)}, nil
	}
}

func usage(typ string) string {
	if typ == "ec" {
		return "Signature Key"
	}
	return "General Purpose Key"
}

// KeyInfo is a stored key as show crypto key mypubkey's | json gives it
// (docs/json.md).
type KeyInfo = show.KeyJSON

func keyData(key *keystore.Key, st *keystore.Store) KeyInfo { return show.KeyView(key, st.Dir()) }

// show is show crypto key mypubkey in IOS's layout; typ "" shows all.
func (k *keyCommands) show(typ string) ctl.Handler {
	return func(ctx context.Context, req *ctl.Request) (*ctl.Reply, error) {
		var keys []*keystore.Key
		var problems []error
		if label, ok := req.Args["label"]; ok {
			key, err := k.getTyped(typ, label)
			if err != nil {
				return nil, err
			}
			keys = []*keystore.Key{key}
		} else {
			all, probs := k.st.List()
			problems = probs
			for _, key := range all {
				if typ == "" || key.Type == typ {
					keys = append(keys, key)
				}
			}
		}
		var b strings.Builder
		var data []KeyInfo
		for _, key := range keys {
			der, err := keystore.PublicDER(key.Public())
			if err != nil {
				continue
			}
			fmt.Fprintf(&b, "%% Key pair was generated at: %s\n", key.Stored.UTC().Format("15:04:05 MST Jan 2 2006"))
			fmt.Fprintf(&b, "Key name: %s\n", key.Label)
			fmt.Fprintf(&b, "Key type: %s KEYS", keystore.Upper(key.Type))
			if key.Type == "rsa" {
				fmt.Fprintf(&b, " %d bits", key.Bits)
			}
			b.WriteString("\n")
			fmt.Fprintf(&b, " Storage Device: %s\n", k.st.Dir())
			fmt.Fprintf(&b, " Usage: %s\n", usage(key.Type))
			b.WriteString(" Key is exportable.\n")
			b.WriteString(" Key Data:\n")
			b.WriteString(keystore.KeyData(der, "  "))
			data = append(data, keyData(key, k.st))
		}
		for _, p := range problems {
			fmt.Fprintf(&b, "%% %v\n", p)
		}
		return &ctl.Reply{Text: b.String(), Data: show.KeysView(typ, time.Now(), data, problems)}, nil
	}
}
