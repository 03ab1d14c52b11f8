package pki_test

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rsa"
	"errors"
	"io/fs"
	"strings"
	"testing"

	"github.com/ctrl-exec-go/ctrl-exec/pkg/pki"
	"github.com/ctrl-exec-go/ctrl-exec/pkg/testknobs"
)

func TestKeyBitsFromEnv(t *testing.T) {
	tests := []struct {
		env  string
		want int
	}{
		{"", 4096}, {"2048", 2048}, {"3072", 3072}, {"4096", 4096},
		{"1024", 4096}, {"2047", 4096}, {"8192", 4096}, {"big", 4096}, {" 2048", 4096},
	}
	for _, tt := range tests {
		t.Run(tt.env, func(t *testing.T) {
			t.Setenv(testknobs.KeyBits, tt.env)
			want := tt.want
			if !testknobs.Enabled {
				want = pki.DefaultKeyBits // a release build ignores the knob
			}
			if got := pki.KeyBitsFromEnv(); got != want {
				t.Errorf("KeyBitsFromEnv() with %q = %d, want %d", tt.env, got, want)
			}
		})
	}
}

func TestDefaultKeySize(t *testing.T) {
	if testing.Short() {
		t.Skip("4096-bit key generation is slow")
	}
	key, err := pki.GenerateKey(pki.DefaultKeyBits)
	if err != nil {
		t.Fatal(err)
	}
	if got := key.N.BitLen(); got != 4096 {
		t.Errorf("key size = %d, want 4096", got)
	}
}

func TestKeyPEMRoundTripIsPKCS8(t *testing.T) {
	key := testKey(t, 0)
	data, err := pki.EncodeKeyPEM(key)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(string(data), "-----BEGIN PRIVATE KEY-----\n") || !strings.HasSuffix(string(data), "-----END PRIVATE KEY-----\n") {
		t.Errorf("not a PKCS#8 PEM block:\n%s", data)
	}
	back, err := pki.ParseKeyPEM(data)
	if err != nil {
		t.Fatal(err)
	}
	if !back.(interface{ Equal(crypto.PrivateKey) bool }).Equal(key) {
		t.Error("key changed in the round trip")
	}
}

// Both key encodings OpenSSL writes load: PKCS#1 from `genrsa -traditional`
// (OpenSSL 1.x's default) and PKCS#8 from `genpkey` (OpenSSL 3's).
func TestLoadKeyReadsOpenSSLKeys(t *testing.T) {
	requireOpenSSL(t)
	dir := t.TempDir()
	tests := []struct {
		name, file, header string
		args               []string
	}{
		{"pkcs1", "k1.pem", "-----BEGIN RSA PRIVATE KEY-----", []string{"genrsa", "-traditional", "-out", "k1.pem", "1024"}},
		{"pkcs8", "k8.pem", "-----BEGIN PRIVATE KEY-----", []string{"genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:1024", "-out", "k8.pem"}},
		{"sec1 ec", "ec.pem", "-----BEGIN EC PRIVATE KEY-----", []string{"ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", "ec.pem"}},
		{"pkcs8 ec", "ec8.pem", "-----BEGIN PRIVATE KEY-----", []string{"genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-out", "ec8.pem"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			openssl(t, dir, tt.args...)
			path := join(dir, tt.file)
			if head := readFile(t, path); !strings.HasPrefix(head, tt.header) {
				t.Fatalf("openssl wrote %.40q, want %s", head, tt.header)
			}
			key, err := pki.LoadKey(path)
			if err != nil {
				t.Fatal(err)
			}
			switch k := key.(type) {
			case *rsa.PrivateKey:
				if k.N.BitLen() != 1024 {
					t.Errorf("bits = %d", k.N.BitLen())
				}
			case *ecdsa.PrivateKey:
				if k.Curve != elliptic.P256() {
					t.Errorf("curve %s", k.Curve.Params().Name)
				}
			default:
				t.Errorf("loaded a %T", key)
			}
		})
	}
}

func TestParseKeyPEMRejects(t *testing.T) {
	tests := map[string]string{
		"empty":       "",
		"certificate": "-----BEGIN CERTIFICATE-----\nYQ==\n-----END CERTIFICATE-----\n",
		"bad pkcs1":   "-----BEGIN RSA PRIVATE KEY-----\nYQ==\n-----END RSA PRIVATE KEY-----\n",
	}
	for name, data := range tests {
		t.Run(name, func(t *testing.T) {
			if _, err := pki.ParseKeyPEM([]byte(data)); err == nil {
				t.Error("want an error")
			}
		})
	}
}

func TestLoadKeyMissingFileNamesPath(t *testing.T) {
	path := join(t.TempDir(), "agent.key")
	_, err := pki.LoadKey(path)
	if err == nil || !strings.Contains(err.Error(), path) || !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("err = %v, want a not-exist error naming %s", err, path)
	}
}
