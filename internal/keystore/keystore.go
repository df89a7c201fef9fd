// Package keystore is isakmpd's key store: the RSA and EC key pairs an
// operator generates or imports from the CLI (`crypto key generate rsa
// label X modulus N`, `crypto key import ...`), kept under the daemon's
// state directory as IOS keeps them in its private configuration, and
// named by `rekey authentication mypubkey {rsa | ec} X` (issue 14 item 2).
//
// One file per label, LABEL.pem in the store's directory: an unencrypted
// PKCS#8 PEM "PRIVATE KEY" block, mode 0600, in a directory of mode 0700.
// Writes are atomic (a temporary file in the directory, fsync, rename,
// fsync of the directory): a crash leaves the old key or the new one,
// never half of one. A label is hostile input (it comes from the control
// socket and from configuration files): it is one word of letters,
// digits, '.', '_' and '-', starting with a letter or digit, at most
// MaxLabel octets, so it can never name a path outside the directory.
// Reads are bounded (MaxKeyFile), refuse anything but a regular file
// (no symbolic link, FIFO or device) and a file others may read.
package keystore

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"time"

	"github.com/groupvpn/groupvpn/internal/atomicfile"
)

// MaxLabel is the longest label, in octets.
const MaxLabel = 64

// MaxKeyFile bounds a key file read from the store (a 4096-bit RSA key in
// PKCS#8 PEM is about 3.3 KB) and a PEM text given to Parse.
const MaxKeyFile = 64 << 10

// MaxKeys bounds how many keys List reads.
const MaxKeys = 1024

// RSA modulus sizes Generate accepts, and EC key sizes.
const (
	MinRSABits = 2048
	MaxRSABits = 4096
)

// ext is the file name extension of a stored key.
const ext = ".pem"

// ErrNotFound is wrapped by Get and Delete when no key has the label.
var ErrNotFound = errors.New("no such key")

// Store is a key store directory. Its methods may be called from several
// goroutines; concurrent writes of one label leave one of them.
type Store struct {
	dir string
}

// Open returns the key store in dir. Nothing is read or created until a
// key is: the directory is made (0700) by the first Put.
func Open(dir string) *Store { return &Store{dir: filepath.Clean(dir)} }

// Dir is the store's directory.
func (s *Store) Dir() string { return s.dir }

// Key is a stored key pair.
type Key struct {
	Label  string
	Type   string // "rsa" or "ec"
	Bits   int    // RSA modulus or EC curve size
	Signer crypto.Signer
	Path   string
	Stored time.Time // when it was generated or imported (the file's modification time)
}

// Public is the key's public half.
func (k *Key) Public() crypto.PublicKey { return k.Signer.Public() }

// Describe is "RSA 2048" or "EC P-256".
func (k *Key) Describe() string { return Describe(k.Signer) }

// ValidLabel reports why label cannot name a key, or nil.
func ValidLabel(label string) error {
	switch {
	case label == "":
		return errors.New("a key label is required")
	case len(label) > MaxLabel:
		return fmt.Errorf("key label of %d characters is too long (at most %d)", len(label), MaxLabel)
	}
	for i := 0; i < len(label); i++ {
		c := label[i]
		alnum := c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9'
		if i == 0 && !alnum {
			return fmt.Errorf("key label %q must start with a letter or a digit", printable(label))
		}
		if !alnum && c != '.' && c != '_' && c != '-' {
			return fmt.Errorf("key label %q: character %q is not allowed (letters, digits, '.', '_' and '-' only)", printable(label), printable(string(c)))
		}
	}
	return nil
}

// printable bounds and cleans a hostile label for an error message.
func printable(s string) string {
	if len(s) > MaxLabel+8 {
		s = s[:MaxLabel+8] + "..."
	}
	return strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f || r == 0xfffd {
			return '?'
		}
		return r
	}, strings.ToValidUTF8(s, "?"))
}

func (s *Store) path(label string) string { return filepath.Join(s.dir, label+ext) }

// Get reads the key stored under label; an error wrapping ErrNotFound
// when there is none.
func (s *Store) Get(label string) (*Key, error) {
	if err := ValidLabel(label); err != nil {
		return nil, err
	}
	if err := s.checkDir(); err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("key %s: %w in key store %s", label, ErrNotFound, s.dir)
		}
		return nil, err
	}
	p := s.path(label)
	b, mtime, err := readKeyFile(p)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("key %s: %w in key store %s", label, ErrNotFound, s.dir)
		}
		return nil, fmt.Errorf("key %s (%s): %w", label, p, err)
	}
	signer, err := ParsePrivateKey(b)
	if err != nil {
		return nil, fmt.Errorf("key %s (%s): %w", label, p, err)
	}
	return &Key{Label: label, Type: Kind(signer), Bits: Bits(signer), Signer: signer, Path: p, Stored: mtime}, nil
}

// readKeyFile reads a stored key: a regular file (a symbolic link is not
// followed, a FIFO does not block), not readable by group or others, of
// at most MaxKeyFile octets.
func readKeyFile(p string) ([]byte, time.Time, error) {
	f, err := os.OpenFile(p, os.O_RDONLY|syscall.O_NOFOLLOW|syscall.O_NONBLOCK, 0)
	if err != nil {
		if errors.Is(err, syscall.ELOOP) {
			return nil, time.Time{}, errors.New("is a symbolic link; the key store holds regular files only")
		}
		return nil, time.Time{}, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, time.Time{}, err
	}
	if !fi.Mode().IsRegular() {
		return nil, time.Time{}, fmt.Errorf("not a regular file (%s)", fi.Mode().Type())
	}
	if perm := fi.Mode().Perm(); perm&0o077 != 0 {
		return nil, time.Time{}, fmt.Errorf("mode %04o lets others read the private key; refused (chmod 600 %s)", perm, p)
	}
	if err := ownedByUs(fi); err != nil {
		return nil, time.Time{}, err
	}
	b, err := io.ReadAll(io.LimitReader(f, MaxKeyFile+1))
	if err != nil {
		return nil, time.Time{}, err
	}
	if len(b) > MaxKeyFile {
		return nil, time.Time{}, fmt.Errorf("larger than %d octets", MaxKeyFile)
	}
	return b, fi.ModTime(), nil
}

// ReadPEMFile reads a PEM file to import (crypto key import ... pem url
// PATH): a regular file (a FIFO does not block), at most MaxKeyFile octets.
func ReadPEMFile(p string) ([]byte, error) {
	if !filepath.IsAbs(p) {
		return nil, fmt.Errorf("%s is not an absolute path", p)
	}
	f, err := os.OpenFile(p, os.O_RDONLY|syscall.O_NONBLOCK, 0)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("not a regular file (%s)", fi.Mode().Type())
	}
	b, err := io.ReadAll(io.LimitReader(f, MaxKeyFile+1))
	if err != nil {
		return nil, err
	}
	if len(b) > MaxKeyFile {
		return nil, fmt.Errorf("larger than %d octets", MaxKeyFile)
	}
	return b, nil
}

// Exists reports whether a key is stored under label (whatever its state).
func (s *Store) Exists(label string) bool {
	if ValidLabel(label) != nil {
		return false
	}
	_, err := os.Lstat(s.path(label))
	return err == nil
}

// List reads every key of the store, sorted by label: at most MaxKeys.
// A file that cannot be read is reported in problems, not skipped silently.
func (s *Store) List() (keys []*Key, problems []error) {
	if err := s.checkDir(); err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, nil
		}
		return nil, []error{err}
	}
	ents, err := os.ReadDir(s.dir)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, nil
		}
		return nil, []error{fmt.Errorf("key store %s: %w", s.dir, err)}
	}
	for _, e := range ents {
		name := e.Name()
		label, ok := strings.CutSuffix(name, ext)
		if !ok || ValidLabel(label) != nil {
			continue // temporary files (.X.pem.tmp-*), anything else
		}
		if len(keys)+len(problems) >= MaxKeys {
			problems = append(problems, fmt.Errorf("key store %s: more than %d keys; the rest not read", s.dir, MaxKeys))
			break
		}
		k, err := s.Get(label)
		if err != nil {
			problems = append(problems, err)
			continue
		}
		keys = append(keys, k)
	}
	sort.Slice(keys, func(i, j int) bool { return keys[i].Label < keys[j].Label })
	return keys, problems
}

// Put stores signer under label, replacing any key of that label,
// atomically and durably.
func (s *Store) Put(label string, signer crypto.Signer) (*Key, error) {
	if err := ValidLabel(label); err != nil {
		return nil, err
	}
	if err := checkKey(signer); err != nil {
		return nil, err
	}
	der, err := x509.MarshalPKCS8PrivateKey(signer)
	if err != nil {
		return nil, fmt.Errorf("key %s: %w", label, err)
	}
	if err := s.mkdir(); err != nil {
		return nil, err
	}
	p := s.path(label)
	if err := writeAtomic(p, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})); err != nil {
		return nil, fmt.Errorf("key %s: writing %s: %w", label, p, err)
	}
	return s.Get(label)
}

// mkdir makes the store's directory (0700) and checks it (checkDir).
func (s *Store) mkdir() error {
	if err := os.MkdirAll(s.dir, 0o700); err != nil {
		return fmt.Errorf("key store %s: %w", s.dir, err)
	}
	return s.checkDir()
}

// checkDir refuses a store directory that group or others may write into,
// or that another user owns: they could replace a key with one they know,
// and forge rekeys signed with it.
func (s *Store) checkDir() error {
	fi, err := os.Stat(s.dir)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return err
		}
		return fmt.Errorf("key store %s: %w", s.dir, err)
	}
	if !fi.IsDir() {
		return fmt.Errorf("key store %s: not a directory", s.dir)
	}
	if perm := fi.Mode().Perm(); perm&0o022 != 0 {
		return fmt.Errorf("key store %s: mode %04o lets others replace keys; refused (chmod 700 %s)", s.dir, perm, s.dir)
	}
	if err := ownedByUs(fi); err != nil {
		return fmt.Errorf("key store %s: %w", s.dir, err)
	}
	return nil
}

// ownedByUs refuses a file or directory owned by a user other than root
// and this process's.
func ownedByUs(fi os.FileInfo) error {
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return nil
	}
	if st.Uid != 0 && int(st.Uid) != os.Geteuid() {
		return fmt.Errorf("owned by uid %d, neither root nor this process's user; refused", st.Uid)
	}
	return nil
}

func writeAtomic(path string, data []byte) error {
	return atomicfile.Write(path, data, 0o600)
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

// Delete removes the key stored under label (crypto key zeroize); an
// error wrapping ErrNotFound when there is none. The file is overwritten
// with zeros before it is unlinked (a best effort: a journaling or
// copy-on-write file system may keep older blocks).
func (s *Store) Delete(label string) error {
	if err := ValidLabel(label); err != nil {
		return err
	}
	p := s.path(label)
	fi, err := os.Lstat(p)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("key %s: %w in key store %s", label, ErrNotFound, s.dir)
		}
		return err
	}
	if fi.Mode().IsRegular() && fi.Size() <= MaxKeyFile {
		if f, err := os.OpenFile(p, os.O_WRONLY|syscall.O_NOFOLLOW, 0); err == nil {
			f.Write(make([]byte, fi.Size()))
			f.Sync()
			f.Close()
		}
	}
	if err := os.Remove(p); err != nil {
		return fmt.Errorf("key %s: %w", label, err)
	}
	return syncDir(s.dir)
}

// Generate makes a new key pair: typ "rsa" with a modulus of bits
// (MinRSABits..MaxRSABits), or "ec" with keysize 256 (P-256) or 384 (P-384).
func Generate(typ string, bits int, rand io.Reader) (crypto.Signer, error) {
	if err := CheckSize(typ, bits); err != nil {
		return nil, err
	}
	if typ == "rsa" {
		return rsa.GenerateKey(rand, bits)
	}
	c := elliptic.P256()
	if bits == 384 {
		c = elliptic.P384()
	}
	return ecdsa.GenerateKey(c, rand)
}

// CheckSize says why Generate refuses a key of typ and bits, or nil.
func CheckSize(typ string, bits int) error {
	switch typ {
	case "rsa":
		if bits < MinRSABits {
			return fmt.Errorf("%% A modulus of %d bits is refused: RSA keys shorter than %d bits are not accepted (NIST SP 800-131A; groupvpn refuses them in key files too); choose %d to %d", bits, MinRSABits, MinRSABits, MaxRSABits)
		}
		if bits > MaxRSABits {
			return fmt.Errorf("%% A modulus of %d bits is refused: at most %d bits", bits, MaxRSABits)
		}
		return nil
	case "ec":
		if bits != 256 && bits != 384 {
			return fmt.Errorf("%% EC keysize %d is refused: 256 (P-256) or 384 (P-384)", bits)
		}
		return nil
	}
	return fmt.Errorf("key type %q: rsa or ec", typ)
}

// checkKey refuses the keys ParsePrivateKey refuses.
func checkKey(signer crypto.Signer) error {
	switch k := signer.(type) {
	case *rsa.PrivateKey:
		if k.N.BitLen() < MinRSABits {
			return fmt.Errorf("RSA key of %d bits is too short (accepted: %d bits or more)", k.N.BitLen(), MinRSABits)
		}
		return nil
	case *ecdsa.PrivateKey:
		switch k.Curve.Params().BitSize {
		case 256, 384, 521:
			return nil
		}
		return fmt.Errorf("EC key on curve %s is not supported (accepted: P-256, P-384, P-521)", k.Curve.Params().Name)
	}
	return fmt.Errorf("%T keys are not supported (accepted: RSA, ECDSA)", signer)
}

// ParsePrivateKey reads the first PEM private key in b: PKCS#8 ("PRIVATE
// KEY"), PKCS#1 ("RSA PRIVATE KEY", what IOS exports) or SEC 1 ("EC
// PRIVATE KEY"); other blocks (a PUBLIC KEY before it, EC PARAMETERS,
// certificates) are skipped. Encrypted keys are refused with the reason.
// RSA keys must have at least 2048 bits; EC keys be on P-256, P-384 or
// P-521. The caller bounds b (MaxKeyFile, policy.MaxKeyFile).
func ParsePrivateKey(b []byte) (crypto.Signer, error) {
	for {
		var blk *pem.Block
		blk, b = pem.Decode(b)
		if blk == nil {
			return nil, fmt.Errorf("no PEM private key found (want a PRIVATE KEY, RSA PRIVATE KEY or EC PRIVATE KEY block)")
		}
		if _, enc := blk.Headers["Proc-Type"]; enc || blk.Type == "ENCRYPTED PRIVATE KEY" {
			return nil, fmt.Errorf("%w; decrypt it first (openssl pkey -in FILE -out PLAIN.pem) and keep it with restrictive permissions", ErrEncrypted)
		}
		var key any
		var err error
		switch blk.Type {
		case "PRIVATE KEY":
			key, err = x509.ParsePKCS8PrivateKey(blk.Bytes)
		case "RSA PRIVATE KEY":
			key, err = x509.ParsePKCS1PrivateKey(blk.Bytes)
		case "EC PRIVATE KEY":
			key, err = x509.ParseECPrivateKey(blk.Bytes)
		default:
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("PEM %s block: %v", blk.Type, err)
		}
		signer, ok := key.(crypto.Signer)
		if !ok {
			return nil, fmt.Errorf("%T keys are not supported (accepted: RSA, ECDSA)", key)
		}
		if err := checkKey(signer); err != nil {
			return nil, err
		}
		return signer, nil
	}
}

// Kind is "rsa" or "ec".
func Kind(s crypto.Signer) string {
	if _, ok := s.(*ecdsa.PrivateKey); ok {
		return "ec"
	}
	return "rsa"
}

// Bits is the RSA modulus or EC curve size.
func Bits(s crypto.Signer) int {
	switch k := s.(type) {
	case *rsa.PrivateKey:
		return k.N.BitLen()
	case *ecdsa.PrivateKey:
		return k.Curve.Params().BitSize
	}
	return 0
}

// Describe is "RSA 2048" or "EC P-256".
func Describe(s crypto.Signer) string {
	if k, ok := s.(*ecdsa.PrivateKey); ok {
		return "EC " + k.Curve.Params().Name
	}
	return fmt.Sprintf("RSA %d", Bits(s))
}

// Upper is "RSA" or "EC" for a kind.
func Upper(kind string) string {
	if kind == "ec" {
		return "EC"
	}
	return "RSA"
}

// PrivatePEM is signer as a PKCS#8 PEM "PRIVATE KEY" block.
func PrivatePEM(signer crypto.Signer) ([]byte, error) {
	der, err := x509.MarshalPKCS8PrivateKey(signer)
	if err != nil {
		return nil, err
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), nil
}

// PublicDER is pub as a DER SubjectPublicKeyInfo (what IOS's Key Data shows).
func PublicDER(pub crypto.PublicKey) ([]byte, error) { return x509.MarshalPKIXPublicKey(pub) }

// PublicPEM is pub as a PEM "PUBLIC KEY" block.
func PublicPEM(pub crypto.PublicKey) ([]byte, error) {
	der, err := PublicDER(pub)
	if err != nil {
		return nil, err
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}), nil
}

// Fingerprint is the SHA-256 of the DER public key, hex.
func Fingerprint(pub crypto.PublicKey) string {
	der, err := PublicDER(pub)
	if err != nil {
		return ""
	}
	sum := sha256.Sum256(der)
	return hex.EncodeToString(sum[:])
}

// KeyData is der as IOS prints a public key's Key Data: upper-case hex in
// groups of 8 digits, 8 groups a line, each line indented by indent.
func KeyData(der []byte, indent string) string {
	h := strings.ToUpper(hex.EncodeToString(der))
	var b strings.Builder
	for len(h) > 0 {
		b.WriteString(indent)
		for g := 0; g < 8 && len(h) > 0; g++ {
			n := min(8, len(h))
			if g > 0 {
				b.WriteByte(' ')
			}
			b.WriteString(h[:n])
			h = h[n:]
		}
		b.WriteByte('\n')
	}
	return b.String()
}
