package catalog

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"reflect"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

func openTest(t testing.TB) (*DB, string) {
	t.Helper()
	path := t.TempDir()
	db, err := testState(t, path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db, path
}

// pkg builds a valid package instance for cpv ("cat/pf"); pn is pf up to
// the last '-'.
func pkg(cpv string, buildID int64) *Instance {
	cat, pf, _ := strings.Cut(cpv, "/")
	pn := pf
	if i := strings.LastIndexByte(pf, '-'); i > 0 {
		pn = pf[:i]
	}
	return &Instance{
		Category: cat, PN: pn, PF: pf, CPV: cpv, BuildID: buildID,
		BuildTime: 1700000000, Format: "xpak", Compression: "zstd",
		Size: 1234, MtimeNs: 1700000000123456789, Mode: 0o644,
		MD5:    strings.Repeat("a", 32),
		SHA1:   strings.Repeat("b", 40),
		SHA256: fmt.Sprintf("%064x", rand.Uint64()),
		Blob:   fmt.Sprintf("%s-%d", strings.ReplaceAll(cpv, "/", "_"), buildID),
		Meta:   map[string]string{"SLOT": "0", "BDEPEND": "dev-lang/go", "USE": "amd64"},
	}
}

func insert(t testing.TB, db *DB, insts ...*Instance) {
	t.Helper()
	err := db.Tx(context.Background(), func(tx *Tx) error {
		for _, inst := range insts {
			if _, err := tx.InsertInstance(inst); err != nil {
				return err
			}
		}
		_, err := tx.BumpGeneration()
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
}

func TestInsertReadBack(t *testing.T) {
	ctx := context.Background()
	db, _ := openTest(t)
	in := &Instance{
		Category: "dev-libs", PN: "openssl", PF: "openssl-3.1.4-r1", BuildID: 7,
		BuildTime: 1711111111, Format: "gpkg", Compression: "xz", Size: 987654,
		MtimeNs: 1711111111999999999, Mode: 0o640,
		MD5:  "0123456789abcdef0123456789abcdef",
		SHA1: "0123456789abcdef0123456789abcdef01234567",
		SHA256: "0123456789abcdef0123456789abcdef" +
			"0123456789abcdef0123456789abcdef",
		Blob: "42", Signed: true, CreatedNs: 5,
		Meta: map[string]string{"SLOT": "0/3", "DEPEND": "a\nb", "EMPTY": ""},
	}
	insert(t, db, in)
	if in.ID == 0 || in.CPV != "dev-libs/openssl-3.1.4-r1" {
		t.Fatalf("after insert: ID %d CPV %q", in.ID, in.CPV)
	}
	want := *in

	var got *Instance
	err := db.Tx(ctx, func(tx *Tx) error {
		var err error
		got, err = tx.InstanceByID(in.ID)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(*got, want) {
		t.Errorf("InstanceByID:\n got %+v\nwant %+v", *got, want)
	}

	all, err := db.Instances(ctx)
	if err != nil || len(all) != 1 {
		t.Fatalf("Instances: %d, %v", len(all), err)
	}
	noMeta := want
	noMeta.Meta = nil
	if !reflect.DeepEqual(all[0], noMeta) {
		t.Errorf("Instances:\n got %+v\nwant %+v", all[0], noMeta)
	}

	n := 0
	err = db.ForEachIndexed(ctx, func(inst *Instance) error {
		n++
		if !reflect.DeepEqual(*inst, want) {
			t.Errorf("ForEachIndexed:\n got %+v\nwant %+v", *inst, want)
		}
		return nil
	})
	if err != nil || n != 1 {
		t.Fatalf("ForEachIndexed: %d, %v", n, err)
	}

	m, err := db.InstanceMeta(ctx, in.ID)
	if err != nil || !reflect.DeepEqual(m, want.Meta) {
		t.Errorf("InstanceMeta = %v, %v", m, err)
	}

	err = db.View(ctx, func(v *View) error {
		l, err := v.InstancesByCPV(in.CPV)
		if err != nil || len(l) != 1 || l[0].ID != in.ID {
			t.Errorf("InstancesByCPV = %v, %v", l, err)
		}
		_, err = v.InstanceByID(in.ID + 100)
		if !errors.Is(err, ErrNotFound) {
			t.Errorf("InstanceByID(missing) = %v", err)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}

	// CreatedNs defaults to the clock.
	p := pkg("a/b-1", 1)
	before := time.Now().UnixNano()
	insert(t, db, p)
	if p.CreatedNs < before {
		t.Errorf("CreatedNs = %d, want >= %d", p.CreatedNs, before)
	}
}

func TestInsertRejectsInconsistentNames(t *testing.T) {
	db, _ := openTest(t)
	for _, inst := range []*Instance{
		{Category: "a", PN: "b", PF: "b-1", CPV: "a/c-1", BuildID: 1, Format: "xpak"},
		{Category: "a", PN: "x", PF: "b-1", BuildID: 1, Format: "xpak"},
		{Category: "a", PN: "b", PF: "b-1", BuildID: 1, Format: "rpm"},
		{Category: "a", PN: "b", PF: "b-1", BuildID: 0, Format: "xpak"}, // schema CHECK
	} {
		err := db.Tx(context.Background(), func(tx *Tx) error {
			_, err := tx.InsertInstance(inst)
			return err
		})
		if err == nil {
			t.Errorf("InsertInstance(%+v) succeeded", inst)
		}
	}
}

func TestBuildIDTaken(t *testing.T) {
	ctx := context.Background()
	db, _ := openTest(t)
	insert(t, db, pkg("a/b-1", 3))
	err := db.Tx(ctx, func(tx *Tx) error {
		_, err := tx.InsertInstance(pkg("a/b-1", 3))
		if !errors.Is(err, ErrBuildIDTaken) {
			t.Errorf("duplicate insert: %v, want ErrBuildIDTaken", err)
		}
		// The transaction survives the failed statement: retry with a free id.
		next, err := tx.NextBuildID("a/b-1")
		if err != nil {
			return err
		}
		_, err = tx.InsertInstance(pkg("a/b-1", next))
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	insts, _ := db.Instances(ctx)
	if len(insts) != 2 || insts[1].BuildID != 4 {
		t.Errorf("instances = %+v", insts)
	}
}

func TestNextBuildID(t *testing.T) {
	ctx := context.Background()
	db, _ := openTest(t)
	check := func(cpv string, want int64) {
		t.Helper()
		err := db.Tx(ctx, func(tx *Tx) error {
			got, err := tx.NextBuildID(cpv)
			if err != nil {
				return err
			}
			if got != want {
				t.Errorf("NextBuildID(%s) = %d, want %d", cpv, got, want)
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	check("a/b-1", 1)
	insert(t, db, pkg("a/b-1", 1), pkg("a/b-1", 5)) // gap 2..4 is not reused
	check("a/b-1", 6)
	ph := pkg("a/b-1", 9)
	ph.Placeholder, ph.Size, ph.Meta = true, 0, nil
	insert(t, db, ph) // placeholders reserve ids
	check("a/b-1", 10)
	check("a/b-2", 1)
	check("a/b", 1)
	err := db.Tx(ctx, func(tx *Tx) error {
		for _, c := range []struct {
			id   int64
			want bool
		}{{1, true}, {2, false}, {5, true}, {9, true}, {10, false}} {
			got, err := tx.BuildIDTaken("a/b-1", c.id)
			if err != nil {
				return err
			}
			if got != c.want {
				t.Errorf("BuildIDTaken(%d) = %v", c.id, got)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	i, p, b, err := db.Stats(ctx)
	if err != nil || i != 2 || p != 1 || b != 2*1234 {
		t.Errorf("Stats = %d %d %d %v", i, p, b, err)
	}
}

func TestFindByDigest(t *testing.T) {
	ctx := context.Background()
	db, _ := openTest(t)
	a := pkg("a/b-1", 1)
	ph := pkg("a/b-1", 2)
	ph.Placeholder, ph.Size, ph.SHA256 = true, 0, "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
	insert(t, db, a, ph)
	err := db.Tx(ctx, func(tx *Tx) error {
		got, err := tx.FindByDigest("a/b-1", a.SHA256)
		if err != nil || got.ID != a.ID {
			t.Errorf("FindByDigest = %+v, %v", got, err)
		}
		if _, err := tx.FindByDigest("a/b-2", a.SHA256); !errors.Is(err, ErrNotFound) {
			t.Errorf("other cpv: %v", err)
		}
		if _, err := tx.FindByDigest("a/b-1", strings.Repeat("0", 64)); !errors.Is(err, ErrNotFound) {
			t.Errorf("other digest: %v", err)
		}
		if _, err := tx.FindByDigest("a/b-1", ph.SHA256); !errors.Is(err, ErrNotFound) {
			t.Errorf("placeholder matched: %v", err)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

func TestDeleteCascades(t *testing.T) {
	ctx := context.Background()
	db, _ := openTest(t)
	a, b := pkg("a/b-1", 1), pkg("a/b-1", 2)
	insert(t, db, a, b)
	err := db.Tx(ctx, func(tx *Tx) error { return tx.DeleteInstance(a.ID) })
	if err != nil {
		t.Fatal(err)
	}
	if m, err := db.InstanceMeta(ctx, a.ID); err != nil || len(m) != 0 {
		t.Errorf("meta left: %v, %v", m, err)
	}
	if len(b.Meta) == 0 {
		t.Fatal("the survivor has no metadata to keep")
	}
	if m, err := db.InstanceMeta(ctx, b.ID); err != nil || len(m) != len(b.Meta) {
		t.Errorf("meta of survivor: %v, %v", m, err)
	}
	err = db.Tx(ctx, func(tx *Tx) error { return tx.DeleteInstance(a.ID) })
	if !errors.Is(err, ErrNotFound) {
		t.Errorf("second delete: %v", err)
	}
	// Ids are never reused, even for the highest deleted one.
	err = db.Tx(ctx, func(tx *Tx) error { return tx.DeleteInstance(b.ID) })
	if err != nil {
		t.Fatal(err)
	}
	c := pkg("a/b-1", 1)
	insert(t, db, c)
	if c.ID <= b.ID {
		t.Errorf("id reused: %d after %d", c.ID, b.ID)
	}
	if err := db.Check(ctx); err != nil {
		t.Error(err)
	}
}

func TestForEachIndexedOrder(t *testing.T) {
	ctx := context.Background()
	db, _ := openTest(t)
	cpvs := []string{
		"cat/foo-9", "cat/foo-10", "a/b+-1", "a/b--1", "a/b-1", "a/b_-1",
		"A/z-1", "a/B-1", "a-b/c-1", "a/bb-1", "cat/foo-9-r1",
	}
	var insts []*Instance
	for _, c := range cpvs {
		insts = append(insts, pkg(c, 2), pkg(c, 1))
	}
	ph := pkg("a/ph-1", 1)
	ph.Placeholder, ph.Size, ph.Meta = true, 0, nil
	insts = append(insts, ph)
	rand.Shuffle(len(insts), func(i, j int) { insts[i], insts[j] = insts[j], insts[i] })
	insert(t, db, insts...)

	// Go's string order is byte order.
	want := slices.Clone(cpvs)
	slices.Sort(want)
	if i, j := slices.Index(want, "cat/foo-10"), slices.Index(want, "cat/foo-9"); i > j {
		t.Fatal("test premise")
	}
	var got []string
	err := db.ForEachIndexed(ctx, func(inst *Instance) error {
		if inst.Placeholder {
			t.Errorf("placeholder %s listed", inst.CPV)
		}
		if len(inst.Meta) != 3 {
			t.Errorf("%s: meta %v", inst.CPV, inst.Meta)
		}
		got = append(got, fmt.Sprintf("%s#%d", inst.CPV, inst.BuildID))
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	var wantIDs []string
	for _, c := range want {
		wantIDs = append(wantIDs, c+"#1", c+"#2")
	}
	if !slices.Equal(got, wantIDs) {
		t.Errorf("ForEachIndexed order:\n got %v\nwant %v", got, wantIDs)
	}

	all, err := db.Instances(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(all) != len(insts) {
		t.Errorf("Instances: %d, want %d", len(all), len(insts))
	}
	if !slices.IsSortedFunc(all, cmpInst) {
		t.Error("Instances not in (cpv, build_id) byte order")
	}

	// fn's error stops the walk and comes back unchanged.
	stop := errors.New("stop here")
	n := 0
	err = db.ForEachIndexed(ctx, func(*Instance) error { n++; return stop })
	if err != stop || n != 1 {
		t.Errorf("early stop: %v after %d", err, n)
	}
}

func cmpInst(a, b Instance) int {
	if c := strings.Compare(a.CPV, b.CPV); c != 0 {
		return c
	}
	return int(a.BuildID - b.BuildID)
}

func TestNextTimestampAndGeneration(t *testing.T) {
	ctx := context.Background()
	db, _ := openTest(t)
	steps := []struct{ now, want int64 }{{100, 100}, {100, 101}, {50, 102}, {0, 103}, {1000, 1000}, {999, 1001}}
	for i, s := range steps {
		var g int64
		err := db.Tx(ctx, func(tx *Tx) (err error) {
			g, err = tx.BumpGeneration()
			return err
		})
		if err != nil || g != int64(i+1) {
			t.Fatalf("BumpGeneration = %d, %v; want %d", g, err, i+1)
		}
		ts, err := db.StampGeneration(ctx, g, s.now)
		if err != nil || ts != s.want {
			t.Errorf("StampGeneration(%d, %d) = %d, %v; want %d", g, s.now, ts, err, s.want)
		}
		// The generation keeps its TIMESTAMP, whatever the clock says.
		if again, err := db.StampGeneration(ctx, g, s.now+500); err != nil || again != ts {
			t.Errorf("StampGeneration again = %d, %v; want %d", again, err, ts)
		}
	}
	if _, err := db.StampGeneration(ctx, 1, 5000); !errors.Is(err, ErrStaleGeneration) {
		t.Errorf("stamping a past generation: %v, want ErrStaleGeneration", err)
	}
	if last, err := db.LastTimestamp(ctx); err != nil || last != 1001 {
		t.Errorf("LastTimestamp = %d, %v", last, err)
	}
}

// TestStampReadThenRecord: the index is served with a TIMESTAMP read
// without a write (StampOf), recorded after (RecordStamp); the first
// record of a generation wins.
func TestStampReadThenRecord(t *testing.T) {
	ctx := context.Background()
	db, _ := openTest(t)
	insert(t, db, pkg("a/b-1", 1))
	st, err := db.StampOf(ctx, 1)
	if err != nil || st.Stored != 0 || st.Next(100) != 100 {
		t.Fatalf("StampOf = %+v, %v", st, err)
	}
	if st2, _ := db.StampOf(ctx, 1); st2 != st {
		t.Errorf("StampOf wrote: %+v then %+v", st, st2)
	}
	if ts, err := db.RecordStamp(ctx, 1, 100); err != nil || ts != 100 {
		t.Errorf("RecordStamp = %d, %v", ts, err)
	}
	if ts, err := db.RecordStamp(ctx, 1, 200); err != nil || ts != 100 {
		t.Errorf("second RecordStamp = %d, %v; want the first, 100", ts, err)
	}
	if st, err := db.StampOf(ctx, 1); err != nil || st.Stored != 100 || st.Next(300) != 100 {
		t.Errorf("StampOf after record = %+v, %v", st, err)
	}
	insert(t, db, pkg("a/b-1", 2))
	if _, err := db.RecordStamp(ctx, 1, 300); !errors.Is(err, ErrStaleGeneration) {
		t.Errorf("recording a past generation: %v", err)
	}
	if st, err := db.StampOf(ctx, 2); err != nil || st.Next(50) != 101 {
		t.Errorf("next generation's stamp = %+v (%d), %v; want 101", st, st.Next(50), err)
	}
}

func TestHeaderAndRefused(t *testing.T) {
	ctx := context.Background()
	db, _ := openTest(t)
	for _, h := range []map[string]string{
		{"ARCH": "amd64", "CHOST": "x86_64-pc-linux-gnu", "USE": "a b"},
		{"ARCH": "arm64"},
	} {
		if err := db.Tx(ctx, func(tx *Tx) error { return tx.SetHeader(h) }); err != nil {
			t.Fatal(err)
		}
		got, err := db.Header(ctx)
		if err != nil || !reflect.DeepEqual(got, h) {
			t.Errorf("Header = %v, %v; want %v", got, err, h)
		}
	}

	err := db.Tx(ctx, func(tx *Tx) error {
		if err := tx.AddRefused("a/x.tbz2", "no CATEGORY", 10, 111); err != nil {
			return err
		}
		if err := tx.AddRefused("b/y.gpkg.tar", "bad tar", 20, 222); err != nil {
			return err
		}
		return tx.AddRefused("a/x.tbz2", "again", 11, 333)
	})
	if err != nil {
		t.Fatal(err)
	}
	r, err := db.Refused(ctx)
	if err != nil || len(r) != 3 || r[0].Path != "a/x.tbz2" || r[0].Reason != "no CATEGORY" ||
		r[0].Size != 10 || r[0].TimeNs != 111 || r[1].Path != "b/y.gpkg.tar" || r[0].ID == 0 {
		t.Errorf("Refused = %+v, %v", r, err)
	}
	if err := db.Tx(ctx, func(tx *Tx) error { return tx.ClearRefused("a/x.tbz2") }); err != nil {
		t.Fatal(err)
	}
	if r, err := db.Refused(ctx); err != nil || len(r) != 1 || r[0].Path != "b/y.gpkg.tar" {
		t.Errorf("after ClearRefused: %+v, %v", r, err)
	}
}

func TestTxRollback(t *testing.T) {
	ctx := context.Background()
	db, _ := openTest(t)
	boom := errors.New("boom")
	err := db.Tx(ctx, func(tx *Tx) error {
		if _, err := tx.InsertInstance(pkg("a/b-1", 1)); err != nil {
			return err
		}
		if err := tx.SetHeader(map[string]string{"ARCH": "amd64"}); err != nil {
			return err
		}
		if err := tx.AddRefused("x", "y", 1, 1); err != nil {
			return err
		}
		if err := tx.SetSetting("last_timestamp", 12345); err != nil {
			return err
		}
		if _, err := tx.BumpGeneration(); err != nil {
			return err
		}
		// Reads in the transaction see its own writes.
		if insts, err := tx.Instances(); err != nil || len(insts) != 1 {
			t.Errorf("in-tx Instances = %d, %v", len(insts), err)
		}
		// Two cursors on the transaction's one connection.
		n := 0
		if err := tx.ForEachIndexed(func(inst *Instance) error { n += len(inst.Meta); return nil }); err != nil || n != 3 {
			t.Errorf("in-tx ForEachIndexed: %d meta, %v", n, err)
		}
		return boom
	})
	if !errors.Is(err, boom) {
		t.Fatalf("Tx = %v, want boom", err)
	}
	insts, _ := db.Instances(ctx)
	h, _ := db.Header(ctx)
	r, _ := db.Refused(ctx)
	g, _ := db.Generation(ctx)
	ts, _ := db.LastTimestamp(ctx)
	if len(insts) != 0 || len(h) != 0 || len(r) != 0 || g != 0 || ts != 0 {
		t.Errorf("rollback left: %d instances, header %v, %d refused, gen %d, ts %d",
			len(insts), h, len(r), g, ts)
	}
	if err := db.Check(ctx); err != nil { // metadata of no instance breaks a foreign key
		t.Error(err)
	}

	// A panic in fn releases the write lock.
	func() {
		defer func() { recover() }()
		db.Tx(ctx, func(tx *Tx) error { panic("x") })
	}()
	insert(t, db, pkg("a/b-1", 1))
}

// allocate runs the ingest allocation pattern: next id + insert, one Tx.
func allocate(ctx context.Context, db *DB, cpv string) error {
	return db.Tx(ctx, func(tx *Tx) error {
		id, err := tx.NextBuildID(cpv)
		if err != nil {
			return err
		}
		if _, err := tx.InsertInstance(pkg(cpv, id)); err != nil {
			return err
		}
		_, err = tx.BumpGeneration()
		return err
	})
}

func TestConcurrentAllocation(t *testing.T) {
	const workers, each = 8, 50
	for _, handles := range []int{1, 2} {
		t.Run(fmt.Sprintf("handles=%d", handles), func(t *testing.T) {
			ctx := context.Background()
			db, path := openTest(t)
			dbs := []*DB{db}
			if handles == 2 {
				db2, err := testState(t, path)
				if err != nil {
					t.Fatal(err)
				}
				defer db2.Close()
				dbs = append(dbs, db2)
			}
			var wg sync.WaitGroup
			errs := make(chan error, workers*each)
			for w := range workers {
				wg.Go(func() {
					for range each {
						if err := allocate(ctx, dbs[w%len(dbs)], "a/b-1"); err != nil {
							errs <- err
						}
					}
				})
			}
			wg.Wait()
			close(errs)
			for err := range errs {
				t.Error(err)
			}
			insts, err := db.Instances(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if len(insts) != workers*each {
				t.Fatalf("%d rows, want %d", len(insts), workers*each)
			}
			for i, inst := range insts {
				if inst.BuildID != int64(i+1) { // distinct and dense
					t.Fatalf("row %d has build id %d", i, inst.BuildID)
				}
			}
			if g, err := db.Generation(ctx); err != nil || g != workers*each {
				t.Errorf("generation = %d, %v", g, err)
			}
		})
	}
}

func TestManyInstances(t *testing.T) {
	ctx := context.Background()
	db, _ := openTest(t)
	n, batch := 20000, 2000
	if testing.Short() {
		n = 4000
	}
	start := time.Now()
	for b := 0; b < n; b += batch {
		var insts []*Instance
		for i := b; i < b+batch; i++ {
			inst := pkg(fmt.Sprintf("cat-%d/pkg%d-%d", i%37, i%101, i), int64(i%3+1))
			inst.Meta = map[string]string{"SLOT": "0", "I": fmt.Sprint(i)}
			if i%10 == 0 {
				inst.Placeholder, inst.Size, inst.Meta = true, 0, nil
			}
			insts = append(insts, inst)
		}
		insert(t, db, insts...)
	}
	t.Logf("insert: %v", time.Since(start))

	start = time.Now()
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	all, err := db.Instances(ctx)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("Instances: %v", time.Since(start))
	runtime.GC()
	runtime.ReadMemStats(&after)
	// DESIGN "Scale": <= 1 KiB heap per instance for the whole tree; the
	// catalog's share should be well under half of that.
	perInst := (int64(after.HeapAlloc) - int64(before.HeapAlloc)) / int64(n)
	t.Logf("heap per instance after Instances(): %d bytes", perInst)
	if perInst > 512 {
		t.Errorf("Instances() retains %d bytes per instance", perInst)
	}
	defer runtime.KeepAlive(all)
	if len(all) != n || !slices.IsSortedFunc(all, cmpInst) {
		t.Fatalf("Instances: %d rows, sorted=%v", len(all), slices.IsSortedFunc(all, cmpInst))
	}

	start = time.Now()
	var prev Instance
	count := 0
	err = db.ForEachIndexed(ctx, func(inst *Instance) error {
		if count > 0 && cmpInst(prev, *inst) >= 0 {
			t.Fatalf("out of order: %s#%d after %s#%d", inst.CPV, inst.BuildID, prev.CPV, prev.BuildID)
		}
		// The meta "I" is the i the instance was built from.
		if want := inst.PF[strings.LastIndexByte(inst.PF, '-')+1:]; inst.Meta["I"] != want || inst.Placeholder {
			t.Fatalf("%s: meta %v", inst.CPV, inst.Meta)
		}
		prev = *inst
		count++
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("ForEachIndexed: %v", time.Since(start))
	if count != n-n/10 {
		t.Errorf("ForEachIndexed: %d, want %d", count, n-n/10)
	}
}

func TestViewIsSnapshot(t *testing.T) {
	ctx := context.Background()
	db, _ := openTest(t)
	insert(t, db, pkg("a/b-1", 1))
	err := db.View(ctx, func(v *View) error {
		g1, err := v.Generation()
		if err != nil {
			return err
		}
		insert(t, db, pkg("a/b-1", 2)) // commits outside the view
		insts, err := v.Instances()
		if err != nil {
			return err
		}
		g2, err := v.Generation()
		if err != nil {
			return err
		}
		if g1 != g2 || len(insts) != 1 {
			t.Errorf("view moved: gen %d -> %d, %d instances", g1, g2, len(insts))
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if g, _ := db.Generation(ctx); g != 2 {
		t.Errorf("generation after = %d", g)
	}
}

func TestTxRetriesBusy(t *testing.T) {
	ctx := context.Background()
	db, _ := openTest(t)
	defer func(d time.Duration) { txFirstBackoff = d }(txFirstBackoff)
	txFirstBackoff = time.Millisecond
	attempts := 0
	err := db.Tx(ctx, func(tx *Tx) error {
		attempts++
		if _, err := tx.InsertInstance(pkg("a/b-1", 1)); err != nil {
			return err
		}
		if attempts < 3 {
			return fmt.Errorf("wrapped: %w", ErrBusy)
		}
		return nil
	})
	if err != nil || attempts != 3 {
		t.Fatalf("Tx = %v after %d attempts", err, attempts)
	}
	if insts, _ := db.Instances(ctx); len(insts) != 1 {
		t.Errorf("%d instances, want 1 (earlier attempts rolled back)", len(insts))
	}

	// Persistent busy gives up after a bounded number of attempts.
	attempts = 0
	err = db.Tx(ctx, func(tx *Tx) error {
		attempts++
		return fmt.Errorf("%w: locked", ErrBusy)
	})
	if !errors.Is(err, ErrBusy) || attempts != txMaxAttempts {
		t.Errorf("Tx = %v after %d attempts", err, attempts)
	}
}
