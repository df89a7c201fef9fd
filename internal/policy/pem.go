package policy

import (
	"crypto"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/groupvpn/groupvpn/internal/keystore"
)

// path resolves a path from the configuration against its directory.
func (p *parser) path(name string) string {
	if filepath.IsAbs(name) {
		return name
	}
	return filepath.Join(p.cfg.Dir, name)
}

// MaxKeyFile bounds the key and certificate files a configuration names:
// a PEM chain is a few kilobytes; a path such as /dev/zero must not make
// the parser read forever.
const MaxKeyFile = 1 << 20

func (p *parser) read(what, name string) ([]byte, bool) {
	b, err := readFile(p.path(name), MaxKeyFile, true)
	if err != nil {
		p.errorf("%s: cannot read %s: %v", what, name, errorsUnwrapPath(err))
		return nil, false
	}
	return b, true
}

// readFile reads at most limit octets of path; regular: it must be a
// regular file (not a device, FIFO or directory).
func readFile(path string, limit int64, regular bool) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	if regular {
		fi, err := f.Stat()
		if err != nil {
			return nil, err
		}
		if !fi.Mode().IsRegular() {
			return nil, fmt.Errorf("not a regular file (%s)", fi.Mode().Type())
		}
	}
	b, err := io.ReadAll(io.LimitReader(f, limit+1))
	if err != nil {
		return nil, err
	}
	if int64(len(b)) > limit {
		return nil, fmt.Errorf("larger than %d octets", limit)
	}
	return b, nil
}

// loadKey reads a PEM private key (PKCS#8, PKCS#1 or SEC 1). typ "rsa" or
// "ec" requires that kind; "" accepts either.
func (p *parser) loadKey(what, name, typ string) (crypto.Signer, bool) {
	b, ok := p.read(what, name)
	if !ok {
		return nil, false
	}
	signer, err := keystore.ParsePrivateKey(b)
	if err != nil {
		p.errorf("%s: %s: %v", what, name, err)
		return nil, false
	}
	got := keystore.Kind(signer)
	if typ != "" && got != typ {
		p.errorf("%s: %s holds an %s key, not an %s key", what, name, keystore.Upper(got), keystore.Upper(typ))
		return nil, false
	}
	return signer, true
}

// loadCerts reads every CERTIFICATE block of a PEM file.
func (p *parser) loadCerts(what, name string) ([]*x509.Certificate, bool) {
	b, ok := p.read(what, name)
	if !ok {
		return nil, false
	}
	var out []*x509.Certificate
	for {
		var blk *pem.Block
		blk, b = pem.Decode(b)
		if blk == nil {
			break
		}
		if blk.Type != "CERTIFICATE" {
			p.errorf("%s: %s: unexpected PEM %s block (want CERTIFICATE blocks only)", what, name, blk.Type)
			return nil, false
		}
		c, err := x509.ParseCertificate(blk.Bytes)
		if err != nil {
			p.errorf("%s: %s: certificate %d: %v", what, name, len(out)+1, err)
			return nil, false
		}
		out = append(out, c)
	}
	if len(out) == 0 {
		p.errorf("%s: %s: no PEM CERTIFICATE block found", what, name)
		return nil, false
	}
	return out, true
}

func poolOf(certs []*x509.Certificate) *x509.CertPool {
	pool := x509.NewCertPool()
	for _, c := range certs {
		pool.AddCert(c)
	}
	return pool
}

// publicKeyEqual reports whether a certificate's key is signer's.
func publicKeyEqual(cert *x509.Certificate, signer crypto.Signer) bool {
	pub, ok := signer.Public().(interface{ Equal(crypto.PublicKey) bool })
	return ok && pub.Equal(cert.PublicKey)
}
