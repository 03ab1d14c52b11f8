// Package etcdstate keeps the control host's shared state in etcd, so that
// several API nodes (and CLIs) behave as one (issue 13): run locks as
// lease-backed keys taken in one transaction, run records under a 24 h
// lease. Every failure to reach etcd is an *UnavailableError naming the
// endpoints; callers answer 503 (API) or exit 255 (CLI).
package etcdstate

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/client/v3/concurrency"
	"go.uber.org/zap"
	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"

	"github.com/ctrl-exec-go/ctrl-exec/pkg/tlsx"
)

// DefaultPrefix is where every key lives unless etcd_prefix says otherwise.
const DefaultPrefix = "/ctrl-exec/"

// LockTTL is the lease of a node's locks: a node that dies (or loses etcd)
// lets its locks go within this many seconds.
const LockTTL = 10

// opTimeout bounds one etcd request; past it etcd counts as unreachable.
const opTimeout = 5 * time.Second

// ErrUnavailable is what every etcd failure matches (errors.Is).
var ErrUnavailable = errors.New("etcd unavailable")

// UnavailableError names the endpoints that could not be reached.
type UnavailableError struct {
	Endpoints []string
	Op        string
	Err       error
}

func (e *UnavailableError) Error() string {
	return fmt.Sprintf("etcd at %s unreachable (%s): %v", strings.Join(e.Endpoints, ","), e.Op, e.Err)
}

func (e *UnavailableError) Is(target error) bool { return target == ErrUnavailable }
func (e *UnavailableError) Unwrap() error        { return e.Err }

// Config is the etcd part of ctrl-exec.conf.
type Config struct {
	Endpoints      []string
	Prefix         string
	Cert, Key, CA  string        // client TLS; all empty for plain HTTP
	DialTimeoutSec int           // 0: 5 s
	RequestTimeout time.Duration // one request; 0: 5 s (tests shorten it)
}

// Client is one connection to the etcd cluster with the key prefix.
type Client struct {
	cli       *clientv3.Client
	prefix    string
	endpoints []string
	timeout   time.Duration
	clientTLS bool // etcd_cert, etcd_key and etcd_ca set

	mu      sync.Mutex
	session *concurrency.Session // this process's lock lease, renewed while alive
}

// Open connects lazily: an unreachable cluster is not an error here, only
// on the first request (so a node starts and recovers without a restart).
func Open(c Config) (*Client, error) {
	if len(c.Endpoints) == 0 {
		return nil, errors.New("etcd_endpoints is empty")
	}
	prefix := c.Prefix
	if prefix == "" {
		prefix = DefaultPrefix
	}
	if !strings.HasSuffix(prefix, "/") {
		prefix += "/"
	}
	var tc *tls.Config
	if c.Cert != "" || c.Key != "" || c.CA != "" {
		if c.Cert == "" || c.Key == "" || c.CA == "" {
			return nil, errors.New("etcd_cert, etcd_key and etcd_ca go together: set all three or none")
		}
		cert, err := tls.LoadX509KeyPair(c.Cert, c.Key)
		if err != nil {
			return nil, fmt.Errorf("etcd_cert %s / etcd_key %s: %w", c.Cert, c.Key, err)
		}
		pool, err := tlsx.LoadCAPool(c.CA)
		if err != nil {
			return nil, fmt.Errorf("etcd_ca %s: %w", c.CA, err)
		}
		tc = &tls.Config{Certificates: []tls.Certificate{cert}, RootCAs: pool, MinVersion: tls.VersionTLS12}
	}
	dial := time.Duration(c.DialTimeoutSec) * time.Second
	if dial == 0 {
		dial = opTimeout
	}
	cli, err := clientv3.New(clientv3.Config{
		Endpoints:            c.Endpoints,
		DialTimeout:          dial,
		DialKeepAliveTime:    5 * time.Second,
		DialKeepAliveTimeout: 2 * time.Second,
		TLS:                  tc,
		Logger:               zap.NewNop(),
		// Reconnect quickly once etcd is back (gRPC's default backs off to 2 min).
		DialOptions: []grpc.DialOption{grpc.WithConnectParams(grpc.ConnectParams{
			Backoff:           backoff.Config{BaseDelay: 100 * time.Millisecond, Multiplier: 1.6, Jitter: 0.2, MaxDelay: 2 * time.Second},
			MinConnectTimeout: 2 * time.Second,
		})},
	})
	if err != nil {
		return nil, &UnavailableError{Endpoints: c.Endpoints, Op: "connect", Err: err}
	}
	timeout := c.RequestTimeout
	if timeout == 0 {
		timeout = opTimeout
	}
	return &Client{cli: cli, prefix: prefix, endpoints: c.Endpoints, timeout: timeout, clientTLS: tc != nil}, nil
}

// Close ends the session (its locks go at once) and the connection.
func (c *Client) Close() error {
	c.mu.Lock()
	s := c.session
	c.session = nil
	c.mu.Unlock()
	if s != nil {
		s.Close()
	}
	return c.cli.Close()
}

// Raw is the etcd client, for tests and tools that need it.
func (c *Client) Raw() *clientv3.Client { return c.cli }

// Prefix is the key prefix, ending in "/".
func (c *Client) Prefix() string { return c.prefix }

func (c *Client) unavailable(op string, err error) error {
	if err == nil {
		return nil
	}
	return &UnavailableError{Endpoints: c.endpoints, Op: op, Err: err}
}

func (c *Client) opCtx() (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.Background(), c.timeout)
}

// lockSession is this process's lease for locks, made on first use and made
// anew when the old one has expired (etcd was out of reach for LockTTL).
func (c *Client) lockSession() (*concurrency.Session, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.session != nil {
		select {
		case <-c.session.Done():
			c.session = nil
		default:
			return c.session, nil
		}
	}
	// The grant is bounded by opTimeout; the session's keep-alive is not.
	ctx, cancel := c.opCtx()
	defer cancel()
	lease, err := c.cli.Grant(ctx, LockTTL)
	if err != nil {
		return nil, c.unavailable("lease grant", err)
	}
	s, err := concurrency.NewSession(c.cli, concurrency.WithLease(lease.ID), concurrency.WithTTL(LockTTL))
	if err != nil {
		return nil, c.unavailable("lease keep-alive", err)
	}
	c.session = s
	return s, nil
}
