package wechat

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/subtle"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"strings"
)

// WeChat's message encryption (消息加解密), used by an official account in
// safe mode (安全模式) and compatible mode (兼容模式): the event XML is
// encrypted with AES-256-CBC under the account's EncodingAESKey, with the
// key's first 16 bytes as IV, over
//
//	16 random bytes | message length (4 bytes, big-endian) | message | AppID
//
// padded PKCS#7-style to a multiple of 32 bytes, and sent in Base64.

// encodingAESKeyLen is the length of an EncodingAESKey: a 32-byte key in
// Base64 without its trailing "=".
const encodingAESKeyLen = 43

// cryptBlock is the padding block of WeChat's message encryption; it is
// twice AES's block size.
const cryptBlock = 32

// decodeAESKey turns an EncodingAESKey into the AES key. The problem it
// reports is worded for an operator who copied the key from 服务器配置.
// WeChat draws the 43 characters at random, so the last one may carry bits
// beyond the 32 bytes; like WeChat, decoding ignores them.
func decodeAESKey(s string) ([]byte, error) {
	if len(s) != encodingAESKeyLen {
		if len(s) == encodingAESKeyLen+1 && strings.HasSuffix(s, "=") {
			return nil, errors.New(`has 44 characters ending in "="; give the 43 characters without the "="`)
		}
		return nil, fmt.Errorf("has %d characters, want %d", len(s), encodingAESKeyLen)
	}
	key, err := base64.StdEncoding.DecodeString(s + "=")
	if err != nil {
		return nil, errors.New("is not Base64 (letters, digits, + and / only)")
	}
	if len(key) != 32 {
		return nil, fmt.Errorf("decodes to %d bytes, want 32", len(key))
	}
	return key, nil
}

// Reasons an encrypted event does not open.
var (
	errCipherBase64  = errors.New("the Encrypt element is not Base64")
	errCipherLength  = errors.New("the Encrypt element is not a whole number of 32-byte blocks")
	errCipherPadding = errors.New("bad padding after decryption (wrong EncodingAESKey?)")
	errCipherLayout  = errors.New("decrypted message length does not fit (wrong EncodingAESKey?)")
	errCipherAppID   = errors.New("the event is for another AppID")
)

// eventCipher opens the events of one account.
type eventCipher struct {
	block cipher.Block
	iv    []byte
	appID string
}

// newEventCipher returns the cipher of key (32 bytes, from decodeAESKey)
// for the account appID.
func newEventCipher(key []byte, appID string) (*eventCipher, error) {
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, err
	}
	return &eventCipher{block: block, iv: append([]byte(nil), key[:aes.BlockSize]...), appID: appID}, nil
}

// open decrypts the Base64 text of an Encrypt element and returns the
// message it carries, after checking its padding, its length and its
// AppID. On errCipherAppID it also returns the AppID found, for the log.
func (c *eventCipher) open(encrypted string) (msg []byte, appID string, err error) {
	data, err := base64.StdEncoding.DecodeString(strings.TrimSpace(encrypted))
	if err != nil {
		return nil, "", errCipherBase64
	}
	if len(data) == 0 || len(data)%cryptBlock != 0 {
		return nil, "", errCipherLength
	}
	plain := make([]byte, len(data))
	cipher.NewCBCDecrypter(c.block, c.iv).CryptBlocks(plain, data)
	plain, err = unpad(plain)
	if err != nil {
		return nil, "", err
	}
	msg, rest, err := splitPlaintext(plain)
	if err != nil {
		return nil, "", err
	}
	if subtle.ConstantTimeCompare(rest, []byte(c.appID)) != 1 {
		return nil, string(rest), errCipherAppID
	}
	return msg, string(rest), nil
}

// unpad removes the PKCS#7 padding to cryptBlock bytes.
func unpad(b []byte) ([]byte, error) {
	n := int(b[len(b)-1])
	if n < 1 || n > cryptBlock || n > len(b) {
		return nil, errCipherPadding
	}
	for _, p := range b[len(b)-n:] {
		if int(p) != n {
			return nil, errCipherPadding
		}
	}
	return b[:len(b)-n], nil
}

// splitPlaintext takes the random prefix and the length off a decrypted
// message and returns the message and what follows it (the AppID).
func splitPlaintext(b []byte) (msg, rest []byte, err error) {
	const head = 16 + 4
	if len(b) < head {
		return nil, nil, errCipherLayout
	}
	n := binary.BigEndian.Uint32(b[16:head])
	if uint64(n) > uint64(len(b)-head) {
		return nil, nil, errCipherLayout
	}
	end := head + int(n)
	return b[head:end], b[end:], nil
}
