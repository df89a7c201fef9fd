package keystore

import (
	"bytes"
	"crypto"
	"crypto/aes"
	"crypto/cipher"
	"crypto/des"
	"crypto/ecdsa"
	"crypto/md5"
	"crypto/rsa"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"strings"
)

// ErrEncrypted is wrapped by ParsePrivateKey for a PEM private key
// encrypted with a passphrase: ParsePrivateKeyPassphrase reads it.
var ErrEncrypted = errors.New("the private key is encrypted with a passphrase")

// ParsePrivateKeyPassphrase is ParsePrivateKey for a key that may be
// encrypted the way IOS's `crypto key export rsa LABEL pem ... 3des
// PASSPHRASE` and OpenSSL's traditional format encrypt it: a PEM block
// with "Proc-Type: 4,ENCRYPTED" and "DEK-Info: ALG,IV", ALG DES-EDE3-CBC,
// DES-CBC or AES-128/192/256-CBC, the key derived from the passphrase by
// OpenSSL's EVP_BytesToKey (MD5, one round, the IV's first 8 octets as
// salt). PKCS#8 "ENCRYPTED PRIVATE KEY" blocks are refused with the reason.
// A wrong passphrase is an error (the padding or the key's structure does
// not check; with CBC and no MAC, a wrong passphrase is detected with high
// probability, not with certainty: the key is then unusable).
func ParsePrivateKeyPassphrase(b, pass []byte) (crypto.Signer, error) {
	rest := b
	for {
		var blk *pem.Block
		blk, rest = pem.Decode(rest)
		if blk == nil {
			return ParsePrivateKey(b) // not encrypted after all: its own reasons
		}
		if blk.Type == "ENCRYPTED PRIVATE KEY" {
			return nil, fmt.Errorf("PKCS#8 encrypted keys are not supported: decrypt it first (openssl pkey -in FILE -out PLAIN.pem), or export it in the traditional format (openssl rsa -traditional -des3)")
		}
		if _, enc := blk.Headers["Proc-Type"]; !enc || !strings.HasSuffix(blk.Type, "PRIVATE KEY") {
			continue
		}
		der, err := decryptLegacy(blk, pass)
		if err != nil {
			return nil, err
		}
		plain := pem.EncodeToMemory(&pem.Block{Type: blk.Type, Bytes: der})
		signer, err := ParsePrivateKey(plain)
		if err != nil {
			return nil, fmt.Errorf("wrong passphrase, or a damaged key (%v)", err)
		}
		return signer, nil
	}
}

func decryptLegacy(blk *pem.Block, pass []byte) ([]byte, error) {
	if blk.Headers["Proc-Type"] != "4,ENCRYPTED" {
		return nil, fmt.Errorf("PEM Proc-Type %q is not supported (want 4,ENCRYPTED)", printable(blk.Headers["Proc-Type"]))
	}
	alg, ivHex, ok := strings.Cut(blk.Headers["DEK-Info"], ",")
	if !ok {
		return nil, errors.New("PEM DEK-Info header missing or malformed")
	}
	var keyLen int
	var newCipher func([]byte) (cipher.Block, error)
	switch strings.ToUpper(alg) {
	case "DES-CBC":
		keyLen, newCipher = 8, des.NewCipher
	case "DES-EDE3-CBC":
		keyLen, newCipher = 24, des.NewTripleDESCipher
	case "AES-128-CBC":
		keyLen, newCipher = 16, aes.NewCipher
	case "AES-192-CBC":
		keyLen, newCipher = 24, aes.NewCipher
	case "AES-256-CBC":
		keyLen, newCipher = 32, aes.NewCipher
	default:
		return nil, fmt.Errorf("PEM encryption %q is not supported (DES-EDE3-CBC, DES-CBC, AES-128/192/256-CBC)", printable(alg))
	}
	iv, err := hex.DecodeString(ivHex)
	if err != nil || len(iv) < 8 {
		return nil, errors.New("PEM DEK-Info IV malformed")
	}
	c, err := newCipher(bytesToKey(pass, iv[:8], keyLen))
	if err != nil {
		return nil, err
	}
	bs := c.BlockSize()
	if len(iv) != bs || len(blk.Bytes) == 0 || len(blk.Bytes)%bs != 0 {
		return nil, errors.New("PEM encrypted key malformed (IV or length)")
	}
	out := make([]byte, len(blk.Bytes))
	cipher.NewCBCDecrypter(c, iv).CryptBlocks(out, blk.Bytes)
	pad := int(out[len(out)-1])
	if pad == 0 || pad > bs || !bytes.Equal(out[len(out)-pad:], bytes.Repeat([]byte{byte(pad)}, pad)) {
		return nil, errors.New("wrong passphrase (the decrypted key's padding does not check)")
	}
	return out[:len(out)-pad], nil
}

// EncryptedPEM is signer's private key as IOS's `crypto key import rsa
// LABEL pem terminal PASSPHRASE` reads it: PKCS#1 ("RSA PRIVATE KEY") or
// SEC 1 ("EC PRIVATE KEY") in a PEM block encrypted with DES-EDE3-CBC
// under a key derived from pass by EVP_BytesToKey (OpenSSL's traditional
// format, what IOS's `crypto key export ... 3des` writes).
func EncryptedPEM(signer crypto.Signer, pass []byte, rand io.Reader) ([]byte, error) {
	var typ string
	var der []byte
	switch k := signer.(type) {
	case *rsa.PrivateKey:
		typ, der = "RSA PRIVATE KEY", x509.MarshalPKCS1PrivateKey(k)
	case *ecdsa.PrivateKey:
		var err error
		if der, err = x509.MarshalECPrivateKey(k); err != nil {
			return nil, err
		}
		typ = "EC PRIVATE KEY"
	default:
		return nil, fmt.Errorf("%T keys are not supported", signer)
	}
	iv := make([]byte, des.BlockSize)
	if _, err := io.ReadFull(rand, iv); err != nil {
		return nil, err
	}
	key := bytesToKey(pass, iv[:8], 24)
	c, err := des.NewTripleDESCipher(key)
	if err != nil {
		return nil, err
	}
	pad := des.BlockSize - len(der)%des.BlockSize
	data := append(bytes.Clone(der), bytes.Repeat([]byte{byte(pad)}, pad)...)
	cipher.NewCBCEncrypter(c, iv).CryptBlocks(data, data)
	return pem.EncodeToMemory(&pem.Block{Type: typ, Headers: map[string]string{
		"Proc-Type": "4,ENCRYPTED", "DEK-Info": "DES-EDE3-CBC," + strings.ToUpper(hex.EncodeToString(iv))}, Bytes: data}), nil
}

// bytesToKey is OpenSSL's EVP_BytesToKey with MD5 and one round.
func bytesToKey(pass, salt []byte, n int) []byte {
	var key, prev []byte
	for len(key) < n {
		h := md5.New()
		h.Write(prev)
		h.Write(pass)
		h.Write(salt)
		prev = h.Sum(nil)
		key = append(key, prev...)
	}
	return key[:n]
}
