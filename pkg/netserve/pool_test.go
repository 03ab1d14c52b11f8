package netserve

import (
	"context"
	"errors"
	"net"
	"os"
	"testing"
	"time"
)

// pair returns the server side of a fresh loopback connection.
func pair(t *testing.T, ln net.Listener) net.Conn {
	t.Helper()
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	s, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// reader is a handler still reading its request: it ends, releasing its
// slot, when a read fails, and reports the error.
func reader(s *Slot, conn net.Conn) <-chan error {
	done := make(chan error, 1)
	go func() {
		_, err := conn.Read(make([]byte, 1))
		s.Release()
		done <- err
	}()
	return done
}

func TestPoolShedsOldestReaderNotServed(t *testing.T) {
	ln := listen(t)
	p := NewPool(2)
	p.ShedAfter = -1 // shed at once; the default waits a second
	ctx := context.Background()

	// Slot 1 has read its request (served), slot 2 is still reading.
	c1 := pair(t, ln)
	s1, ok := p.Admit(ctx, c1)
	if !ok || !s1.Read() {
		t.Fatal("first admit")
	}
	c2 := pair(t, ln)
	s2, _ := p.Admit(ctx, c2)
	r2 := reader(s2, c2)

	// A third connection sheds the reader, never the served one.
	c3 := pair(t, ln)
	s3, ok := p.Admit(ctx, c3)
	if !ok {
		t.Fatal("third admit")
	}
	if err := <-r2; !errors.Is(err, os.ErrDeadlineExceeded) || !s2.Shed() || s2.Read() {
		t.Errorf("shed reader: read error %v, Shed %v", err, s2.Shed())
	}
	if s1.Shed() {
		t.Error("a served connection was shed")
	}

	// With every slot served, Admit waits (here until ctx ends).
	s3.Read()
	short, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
	defer cancel()
	if _, ok := p.Admit(short, pair(t, ln)); ok {
		t.Error("admitted beyond the cap with nothing to shed")
	}
	s1.Release()
	if _, ok := p.Admit(ctx, pair(t, ln)); !ok {
		t.Error("not admitted after a slot came free")
	}
}

// A reader younger than ShedAfter is not shed until it is that old.
func TestPoolShedAfter(t *testing.T) {
	ln := listen(t)
	now := time.Unix(1000, 0)
	clock := make(chan time.Time, 100)
	p := NewPool(1)
	p.ShedAfter = time.Hour
	p.Now = func() time.Time {
		select {
		case now = <-clock:
		default:
		}
		return now
	}
	c1 := pair(t, ln)
	s1, _ := p.Admit(context.Background(), c1)
	r1 := reader(s1, c1)

	short, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if _, ok := p.Admit(short, pair(t, ln)); ok || s1.Shed() {
		t.Fatal("a young reader was shed")
	}
	clock <- now.Add(time.Hour)
	if _, ok := p.Admit(context.Background(), pair(t, ln)); !ok {
		t.Fatal("not admitted once the reader was old enough")
	}
	if err := <-r1; err == nil || !s1.Shed() {
		t.Errorf("old reader: %v", err)
	}
}

// Stop cuts the readers and refuses new connections.
func TestPoolStop(t *testing.T) {
	ln := listen(t)
	p := NewPool(4)
	c := pair(t, ln)
	s, _ := p.Admit(context.Background(), c)
	r := reader(s, c)
	p.Stop()
	if err := <-r; err == nil {
		t.Error("reader not cut by Stop")
	}
	if _, ok := p.Admit(context.Background(), pair(t, ln)); ok {
		t.Error("admitted after Stop")
	}
}
