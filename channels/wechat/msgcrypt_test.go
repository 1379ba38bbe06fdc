package wechat

import (
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"strings"
	"testing"
)

// testAESKey is a 32-byte key of these tests, and testEncodingAESKey its
// EncodingAESKey form.
var (
	testAESKey         = []byte("0123456789abcdef0123456789ABCDEF")
	testEncodingAESKey = strings.TrimSuffix(base64.StdEncoding.EncodeToString(testAESKey), "=")
)

// seal encrypts plain (a multiple of 32 bytes, padding included) with
// AES-256-CBC, IV the key's first 16 bytes, and returns it in Base64.
func seal(t *testing.T, key, plain []byte) string {
	t.Helper()
	block, err := aes.NewCipher(key)
	if err != nil {
		t.Fatal(err)
	}
	out := make([]byte, len(plain))
	cipher.NewCBCEncrypter(block, key[:16]).CryptBlocks(out, plain)
	return base64.StdEncoding.EncodeToString(out)
}

// layout builds 16 random bytes | length | msg | appID, with the length
// field given separately so tests can lie in it.
func layout(length uint32, msg, appID string) []byte {
	b := []byte("RANDOM-PREFIX-16")
	b = binary.BigEndian.AppendUint32(b, length)
	b = append(b, msg...)
	return append(b, appID...)
}

// pad returns b with PKCS#7 padding to 32 bytes.
func pad(b []byte) []byte {
	n := 32 - len(b)%32
	return append(bytes.Clone(b), bytes.Repeat([]byte{byte(n)}, n)...)
}

func TestDecodeAESKey(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want string // part of the error; "" for success
	}{
		{"valid", testEncodingAESKey, ""},
		{"with the trailing =", testEncodingAESKey + "=", `without the "="`},
		{"short", testEncodingAESKey[:42], "has 42 characters, want 43"},
		{"long", testEncodingAESKey + "AB", "has 45 characters, want 43"},
		{"empty", "", "has 0 characters"},
		{"not Base64", "!" + testEncodingAESKey[1:], "is not Base64"},
		{"URL alphabet", "-" + testEncodingAESKey[1:], "is not Base64"},
		{"space inside", testEncodingAESKey[:20] + " " + testEncodingAESKey[21:], "is not Base64"},
		{"newline inside", testEncodingAESKey[:20] + "\n" + testEncodingAESKey[21:], "is not Base64"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			key, err := decodeAESKey(tt.in)
			if tt.want == "" {
				if err != nil || !bytes.Equal(key, testAESKey) {
					t.Fatalf("key %q, err %v", key, err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("err %v, want %q", err, tt.want)
			}
		})
	}
	// WeChat's keys are random characters: the bits the last one carries
	// beyond 32 bytes are ignored, not refused.
	last := testEncodingAESKey[:42] + "1"
	if _, err := decodeAESKey(last); err != nil {
		t.Errorf("key with trailing bits: %v", err)
	}
}

func TestOpen(t *testing.T) {
	const app = "wx1234567890abcdef"
	const msg = "<xml><MsgType>event</MsgType></xml>"
	c, err := newEventCipher(testAESKey, app)
	if err != nil {
		t.Fatal(err)
	}
	otherKey := []byte("fedcba9876543210FEDCBA9876543210")
	full := layout(uint32(len(msg)), msg, app)
	badPad := pad(full)
	badPad[len(badPad)-2] ^= 1 // the last byte says n, one before it differs
	tests := []struct {
		name      string
		encrypted string
		want      error
		appID     string
	}{
		{"valid", seal(t, testAESKey, pad(full)), nil, app},
		{"surrounding whitespace", " " + seal(t, testAESKey, pad(full)) + "\n", nil, app},
		{"not Base64", "not*base64", errCipherBase64, ""},
		{"empty", "", errCipherLength, ""},
		{"one AES block", base64.StdEncoding.EncodeToString(make([]byte, 16)), errCipherLength, ""},
		{"48 bytes", base64.StdEncoding.EncodeToString(make([]byte, 48)), errCipherLength, ""},
		{"inconsistent padding", seal(t, testAESKey, badPad), errCipherPadding, ""},
		{"padding byte 0", seal(t, testAESKey, append(full[:32:32], make([]byte, 32)...)), errCipherPadding, ""},
		{"padding byte 33", seal(t, testAESKey, bytes.Repeat([]byte{33}, 64)), errCipherPadding, ""},
		{"wrong key", seal(t, otherKey, pad(full)), errCipherPadding, ""},
		{"shorter than the header", seal(t, testAESKey, pad([]byte("RANDOM-PREFIX-16ab"))), errCipherLayout, ""},
		{"length beyond the message", seal(t, testAESKey, pad(layout(uint32(len(msg)+len(app)+1), msg, app))), errCipherLayout, ""},
		{"huge length", seal(t, testAESKey, pad(layout(0xFFFFFFFF, msg, app))), errCipherLayout, ""},
		{"other AppID", seal(t, testAESKey, pad(layout(uint32(len(msg)), msg, "wx0000000000000000"))), errCipherAppID, "wx0000000000000000"},
		{"no AppID", seal(t, testAESKey, pad(layout(uint32(len(msg)), msg, ""))), errCipherAppID, ""},
		{"AppID with a suffix", seal(t, testAESKey, pad(layout(uint32(len(msg)), msg, app+"x"))), errCipherAppID, app + "x"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, appID, err := c.open(tt.encrypted)
			if !errors.Is(err, tt.want) {
				t.Fatalf("err %v, want %v", err, tt.want)
			}
			if appID != tt.appID {
				t.Errorf("appID %q, want %q", appID, tt.appID)
			}
			if tt.want == nil && string(got) != msg {
				t.Errorf("message %q", got)
			}
		})
	}
}

// TestOpenPaddingWholeBlock: content that fills whole blocks gets a whole
// block of padding (32 bytes of 32).
func TestOpenPaddingWholeBlock(t *testing.T) {
	const app = "wxABCDEFGHIJKL"
	msg := strings.Repeat("x", 64-20-len(app))
	plain := layout(uint32(len(msg)), msg, app)
	if len(plain) != 64 {
		t.Fatalf("layout is %d bytes", len(plain))
	}
	c, _ := newEventCipher(testAESKey, app)
	got, _, err := c.open(seal(t, testAESKey, pad(plain)))
	if err != nil || string(got) != msg {
		t.Fatalf("%q %v", got, err)
	}
}

// FuzzOpen: whatever arrives in Encrypt, open returns an error or a
// message, and never panics.
func FuzzOpen(f *testing.F) {
	c, _ := newEventCipher(testAESKey, "wx1234567890abcdef")
	f.Add("")
	f.Add("not*base64")
	f.Add(base64.StdEncoding.EncodeToString(make([]byte, 32)))
	f.Add(base64.StdEncoding.EncodeToString(bytes.Repeat([]byte{0xff}, 64)))
	f.Fuzz(func(t *testing.T, s string) {
		msg, _, err := c.open(s)
		if err == nil && msg == nil {
			t.Fatal("no message and no error")
		}
	})
}
