package state

import (
	"context"
	"fmt"
	"sync"

	"github.com/ctrl-exec-go/ctrl-exec/pkg/rotation"
)

// sharedRotation is a shared backend's rotation state (a rotation.Store)
// and the ctrl-exec identity it publishes with each rotation.
type sharedRotation interface {
	rotation.Store
	// where names the identity's place for messages.
	where() string
	// keysAllowed is nil when the connection may carry a private key.
	keysAllowed() error
	identity() (data []byte, rev int64, err error)
	swapIdentity(rev int64, data []byte) (bool, error)
	// watchIdentity calls changed at once and after each change until ctx ends.
	watchIdentity(ctx context.Context, changed func())
}

// RotationStore is where the rotation state lives: rotation.json at file
// with the files backend, one key shared by every node with etcd.
func (b *Backend) RotationStore(file string) rotation.Store {
	if b == nil || b.rotation == nil {
		return rotation.FileStore{Path: file}
	}
	return b.rotation
}

// IdentityShareable is nil when rotate-cert and setup-ctrl-exec may make a
// new ctrl-exec identity: always with the files; with etcd only when its
// connection may carry the private key (etcdstate's KeysAllowed).
func (b *Backend) IdentityShareable() error {
	if b == nil || b.rotation == nil {
		return nil
	}
	return b.rotation.keysAllowed()
}

// SyncIdentity makes the ctrl-exec pair in caDir (ctrl-exec.crt and .key,
// and their .prev twins) what the shared backend holds, if it holds one
// and its connection may carry the key. After a rewrite, serial is the
// certificate's serial ("" when nothing changed). Files: nothing to do.
func (b *Backend) SyncIdentity(caDir string) (serial string, err error) {
	if b == nil || b.rotation == nil || b.rotation.keysAllowed() != nil {
		return "", nil
	}
	data, _, err := b.rotation.identity()
	if err != nil || data == nil {
		return "", err
	}
	id, err := rotation.ParseIdentity(data)
	if err != nil {
		return "", fmt.Errorf("%s: %w", b.rotation.where(), err)
	}
	changed, err := rotation.WriteIdentity(caDir, id)
	if err != nil {
		return "", fmt.Errorf("update the ctrl-exec certificate from %s: %w", b.rotation.where(), err)
	}
	if !changed {
		return "", nil
	}
	if serial = id.Serial(); serial == "" {
		serial = "?" // changed, whatever it holds
	}
	return serial, nil
}

// FollowIdentity is SyncIdentity for a long-running process (the API,
// pairing-mode): now, and again on every change etcd reports (a watch),
// until stop. After each rewrite it calls changed (drop TLS sessions made
// with the old certificate); each failure goes to warn. Files: nothing.
func (b *Backend) FollowIdentity(ctx context.Context, caDir string, changed func(serial string), warn func(error)) (stop func()) {
	if b == nil || b.rotation == nil || b.rotation.keysAllowed() != nil {
		return func() {}
	}
	ctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	wg.Go(func() {
		b.rotation.watchIdentity(ctx, func() {
			serial, err := b.SyncIdentity(caDir)
			if err != nil && ctx.Err() == nil {
				warn(err)
			}
			if serial != "" {
				changed(serial)
			}
		})
	})
	var once sync.Once
	return func() {
		once.Do(func() {
			cancel()
			wg.Wait()
		})
	}
}

// PublishIdentity makes caDir's ctrl-exec pair (just made by
// setup-ctrl-exec) the one every node uses; there is no previous pair.
// Files: nothing to do.
func (b *Backend) PublishIdentity(caDir string) error {
	if b == nil || b.rotation == nil {
		return nil
	}
	id, err := rotation.ReadIdentity(caDir)
	if err != nil {
		return err
	}
	id.PrevCert, id.PrevKey = nil, nil
	for {
		_, rev, err := b.rotation.identity()
		if err != nil {
			return err
		}
		ok, err := b.rotation.swapIdentity(rev, id.Marshal())
		if ok || err != nil {
			return err
		}
	}
}
