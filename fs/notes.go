package fs

import "sync"

// noteQueue holds the kernel invalidations still to send, at most one per
// (directory, name): a burst of changes to one name costs one notification,
// and nothing is ever dropped (a dropped one would leave a stale name in the
// kernel for the hour entries are cached). Waiters on a name queued again
// are answered by the next send.
type noteQueue struct {
	mu      sync.Mutex
	cond    *sync.Cond
	order   []noteKey
	pending map[noteKey][]chan struct{}
	closed  bool
}

type noteKey struct{ dir, name string }

func newNoteQueue() *noteQueue {
	q := &noteQueue{pending: map[noteKey][]chan struct{}{}}
	q.cond = sync.NewCond(&q.mu)
	return q
}

// push queues k; done, if not nil, is closed once k has been sent.
func (q *noteQueue) push(k noteKey, done chan struct{}) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.closed {
		if done != nil {
			close(done)
		}
		return
	}
	waiters, queued := q.pending[k]
	if done != nil {
		waiters = append(waiters, done)
	}
	q.pending[k] = waiters
	if !queued {
		q.order = append(q.order, k)
		q.cond.Signal()
	}
}

// pop takes the oldest key and its waiters; ok is false once closed.
func (q *noteQueue) pop() (k noteKey, waiters []chan struct{}, ok bool) {
	q.mu.Lock()
	defer q.mu.Unlock()
	for len(q.order) == 0 && !q.closed {
		q.cond.Wait()
	}
	if q.closed {
		return noteKey{}, nil, false
	}
	k = q.order[0]
	q.order[0] = noteKey{}
	q.order = q.order[1:]
	if len(q.order) == 0 {
		q.order = nil // let a burst's backing array go
	}
	waiters = q.pending[k]
	delete(q.pending, k)
	return k, waiters, true
}

// close releases the senders and every waiter.
func (q *noteQueue) close() {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.closed = true
	for _, ws := range q.pending {
		for _, w := range ws {
			close(w)
		}
	}
	q.pending, q.order = map[noteKey][]chan struct{}{}, nil
	q.cond.Broadcast()
}
