package keystore

import (
	"bytes"
	"crypto"
	"crypto/aes"
	"crypto/cipher"
	"crypto/des"
	"crypto/md5"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
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
	// EVP_BytesToKey(MD5, salt = iv[:8], count 1).
	var key, prev []byte
	for len(key) < keyLen {
		h := md5.New()
		h.Write(prev)
		h.Write(pass)
		h.Write(iv[:8])
		prev = h.Sum(nil)
		key = append(key, prev...)
	}
	c, err := newCipher(key[:keyLen])
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
