package fs

import (
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
)

func TestNoteQueueCoalesces(t *testing.T) {
	q := newNoteQueue()
	a, b := noteKey{"app-misc", "x"}, noteKey{"", "Packages"}
	w1, w2, w3 := make(chan struct{}), make(chan struct{}), make(chan struct{})
	q.push(a, w1)
	q.push(b, nil)
	q.push(a, w2) // coalesced with the first: one send answers both
	q.push(b, w3)
	k, ws, ok := q.pop()
	if !ok || k != a || len(ws) != 2 {
		t.Fatalf("first pop = %v %d waiters %v; want %v with 2 waiters", k, len(ws), ok, a)
	}
	k, ws, ok = q.pop()
	if !ok || k != b || len(ws) != 1 || ws[0] != w3 {
		t.Fatalf("second pop = %v %v %v; want %v with w3", k, ws, ok, b)
	}
	// Queued again after its pop: sent again (the change came later).
	q.push(a, nil)
	if k, _, ok := q.pop(); !ok || k != a {
		t.Fatalf("re-queued pop = %v %v", k, ok)
	}
}

func TestNoteQueueNeverDrops(t *testing.T) {
	q := newNoteQueue()
	const n = 200000 // more than the old bounded channel held
	for i := range n {
		q.push(noteKey{"d", strconv.Itoa(i)}, nil)
	}
	got := 0
	for range n {
		if _, _, ok := q.pop(); !ok {
			t.Fatal("pop failed")
		}
		got++
	}
	if got != n {
		t.Fatalf("popped %d of %d", got, n)
	}
}

func TestNoteQueueClose(t *testing.T) {
	q := newNoteQueue()
	w := make(chan struct{})
	q.push(noteKey{"d", "n"}, w)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		q.pop() // takes the queued one
		if _, _, ok := q.pop(); ok {
			t.Error("pop after close: ok")
		}
	}()
	// close must wake a pop that waits: it is called once the goroutine
	// has taken the queued key and waits in its second pop.
	waitFor(t, "the second pop waiting on the empty queue", func() bool {
		return waitingIn("TestNoteQueueClose", "sync.Cond.Wait")
	})
	q.close()
	wg.Wait()
	late := make(chan struct{})
	q.push(noteKey{"d", "m"}, late)
	select {
	case <-late:
	default:
		t.Error("a waiter queued after close is never answered")
	}
}

// waitingIn tells whether a goroutine started by fn (a test function's
// name) is blocked with the wait reason state ("sync.Cond.Wait",
// "chan receive"), from the stacks of all goroutines.
func waitingIn(fn, state string) bool {
	buf := make([]byte, 1<<20)
	buf = buf[:runtime.Stack(buf, true)]
	for _, g := range strings.Split(string(buf), "\n\n") {
		header, _, _ := strings.Cut(g, "\n")
		if strings.Contains(header, "["+state) && strings.Contains(g, "."+fn+".") {
			return true
		}
	}
	return false
}
