package fake

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
)

// Crypter encrypts messages as WeChat does for an official account in safe
// mode (安全模式) or compatible mode (兼容模式): AES-256-CBC under the
// account's EncodingAESKey, with the key's first 16 bytes as IV, over
//
//	16 random bytes | message length (4 bytes, big-endian) | message | AppID
//
// padded PKCS#7-style to a multiple of 32 bytes, then Base64.
type Crypter struct {
	block cipher.Block
	iv    []byte
	appID string
	// Rand gives the 16 random bytes of each message; nil means
	// crypto/rand. Tests set it for a known answer.
	Rand io.Reader
}

// NewCrypter returns the crypter of an EncodingAESKey (43 Base64
// characters, no trailing "=") for the account appID.
func NewCrypter(encodingAESKey, appID string) (*Crypter, error) {
	if len(encodingAESKey) != 43 {
		return nil, fmt.Errorf("EncodingAESKey has %d characters, want 43", len(encodingAESKey))
	}
	key, err := base64.StdEncoding.DecodeString(encodingAESKey + "=")
	if err != nil || len(key) != 32 {
		return nil, errors.New("EncodingAESKey is not the Base64 of 32 bytes")
	}
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, err
	}
	return &Crypter{block: block, iv: key[:aes.BlockSize], appID: appID}, nil
}

// Encrypt returns the text of the Encrypt element that carries msg.
func (c *Crypter) Encrypt(msg []byte) (string, error) {
	const blockSize = 32
	r := c.Rand
	if r == nil {
		r = rand.Reader
	}
	n := 16 + 4 + len(msg) + len(c.appID)
	pad := blockSize - n%blockSize
	buf := make([]byte, n+pad)
	if _, err := io.ReadFull(r, buf[:16]); err != nil {
		return "", fmt.Errorf("random prefix: %w", err)
	}
	binary.BigEndian.PutUint32(buf[16:20], uint32(len(msg)))
	copy(buf[20:], msg)
	copy(buf[20+len(msg):], c.appID)
	for i := n; i < len(buf); i++ {
		buf[i] = byte(pad)
	}
	cipher.NewCBCEncrypter(c.block, c.iv).CryptBlocks(buf, buf)
	return base64.StdEncoding.EncodeToString(buf), nil
}

// MsgSign returns the msg_signature of an encrypted event: SHA1 of token,
// timestamp, nonce and the Encrypt text, sorted and concatenated.
func MsgSign(token, timestamp, nonce, encrypted string) string {
	return sha1Sorted(token, timestamp, nonce, encrypted)
}
