package main

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"pkgdirfs/catalog"
	"pkgdirfs/layout"
)

// pruneBatch is how many removals one catalog transaction carries.
const pruneBatch = 500

func cmdPrune(args []string) int {
	fl := newFlags("prune")
	state := stateFlag(fl)
	keep := fl.Int("keep", 0, "keep the `N` newest builds of each CPV (newest: BUILD_TIME, then BUILD_ID), remove the others")
	perUse := fl.Bool("per-use", false, "with --keep: keep the N newest of each distinct USE set of each CPV")
	older := fl.String("older-than", "", "remove only builds whose BUILD_TIME is older than `DUR` (30d, 36h); alone: every such build")
	keepAtoms := fl.String("keep-atoms", "", "never remove a build an atom in `FILE` matches (one atom a line, # comments; e.g. a client's world file)")
	dry := fl.Bool("dry-run", false, "print what would be removed, change nothing")
	ops, code := parseArgs(fl, args)
	if code >= 0 {
		return code
	}
	usage := func(format string, a ...any) int {
		fmt.Fprintf(os.Stderr, "pkgdirfs prune: "+format+"\n", a...)
		return 2
	}
	switch {
	case len(ops) != 0:
		return usage("unexpected operand %q (the policy is given by --keep, --older-than and --keep-atoms)", ops[0])
	case *keep < 0:
		return usage("--keep %d: want N >= 1", *keep)
	case *perUse && *keep == 0:
		return usage("--per-use needs --keep N")
	case *keep == 0 && *older == "":
		return usage("nothing to prune by: give --keep N and/or --older-than DUR")
	}
	policy := catalog.PrunePolicy{Keep: *keep, PerUse: *perUse}
	now := time.Now()
	if *older != "" {
		d, err := parseAge(*older)
		if err != nil {
			return usage("--older-than: %v", err)
		}
		policy.Before = now.Add(-d).Unix()
	}
	var protect []*layout.Atom
	if *keepAtoms != "" {
		var err error
		if protect, err = readAtomsFile(*keepAtoms); err != nil {
			return usage("--keep-atoms: %v", err)
		}
	}
	if why := notAState(location(*state)); why != "" {
		return fail("prune: %s is not a pkgdirfs state (%s)", *state, why)
	}

	// Builds go in catalog batches either way. A daemon serving the state
	// picks each batch up as one change and keeps the builds downloadable
	// for its --removed-grace before it drops their blobs; unserved, the
	// state is held (no mount starts meanwhile) and the blobs go at once.
	log := newLogger(os.Stderr)
	var (
		store *catalog.Store
		mnt   string
		err   error
	)
	if *dry {
		store, err = openToRead(location(*state), log)
	} else {
		var lk *catalog.StateLock
		lk, mnt, err = claimState(*state)
		if err != nil {
			return fail("prune: %v", err)
		}
		if lk != nil {
			defer lk.Release()
			store, err = catalog.OpenStoreLocked(location(*state), log, lk)
		} else {
			store, err = catalog.OpenStoreAt(location(*state), log)
		}
	}
	if err != nil {
		return fail("prune: %v", err)
	}
	defer store.Close()

	doomed, kept, shared, err := selectPrune(store, policy, protect)
	if err != nil {
		return fail("prune: %v", err)
	}
	// A build a snapshot holds stays in the live tree too: prune is a
	// policy, and the snapshot says this build is wanted. (rm through the
	// mount and mount --keep do remove it; the snapshot keeps its copy.)
	doomed, heldKept, err := spareSnapshotted(store, doomed)
	if err != nil {
		return fail("prune: %v", err)
	}
	kept += len(heldKept)
	// What each blob holds on disk before it goes: what its removal can
	// release is known only now.
	before := statBlobs(store, doomed)
	w := bufio.NewWriter(os.Stdout)
	defer w.Flush()
	for _, h := range heldKept {
		printHeld(w, map[bool]string{true: "would keep", false: "kept"}[*dry], &h.Instance, h.by)
	}
	var (
		removed   []catalog.Instance
		removeErr error
		verb      = "removed"
		cpvs      = map[string]bool{}
		size      int64
		space     spaceReport
	)
	switch {
	case *dry:
		verb, removed = "would remove", doomed
		for i := range removed {
			printRemoval(w, verb, &removed[i])
		}
		space = dryRunSpace(before, shared)
	default:
		// A mount follows the catalog within its poll interval; prune
		// returns once it shows the change (its last build gone there).
		var shown string
		if mnt != "" && len(doomed) > 0 {
			if p := filepath.Join(mnt, instPath(&doomed[len(doomed)-1])); lexists(p) {
				shown = p
			}
		}
		removed, removeErr = removeInBatches(store, doomed, func(in *catalog.Instance) { printRemoval(w, verb, in) },
			func(in *catalog.Instance, by []string) { printHeld(w, "kept", in, by) })
		// Removed builds whose grace ended (earlier ones') are collected by
		// whoever finds them; what that releases is released now.
		expired, err := expireTombstones(store)
		if err != nil && removeErr == nil {
			removeErr = err
		}
		space, err = removedSpace(store, removed, before)
		if err != nil && removeErr == nil {
			removeErr = err
		}
		space.Now += expired
		if shown != "" && removeErr == nil {
			for deadline := time.Now().Add(10 * time.Second); lexists(shown) && time.Now().Before(deadline); {
				time.Sleep(20 * time.Millisecond)
			}
			if lexists(shown) {
				fmt.Fprintf(os.Stderr, "pkgdirfs prune: the mount at %s still shows %s after 10 s (is its daemon busy?)\n", mnt, shown)
			}
		}
	}
	for _, in := range removed {
		cpvs[in.CPV] = true
		size += in.Size
	}
	fmt.Fprintf(w, "%s %d %s of %d %s, %s; %s; kept %d\n", verb, len(removed), plural(len(removed), "build", "builds"),
		len(cpvs), plural(len(cpvs), "CPV", "CPVs"), sizeText(size), space.text(*dry), kept+len(doomed)-len(removed))
	if removeErr != nil {
		w.Flush()
		return fail("prune: %v", removeErr)
	}
	return 0
}

// printHeld says a build is kept because snapshots hold it.
func printHeld(w io.Writer, verb string, in *catalog.Instance, by []string) {
	fmt.Fprintf(w, "%s %s build %d (built %s, %d bytes): %s: held by %s %s\n", verb,
		in.CPV, in.BuildID, builtText(in.BuildTime), in.Size, instPath(in),
		plural(len(by), "snapshot", "snapshots"), strings.Join(by, ", "))
}

// snapshotted is a build prune keeps because snapshots hold it.
type snapshotted struct {
	catalog.Instance
	by []string // the snapshots holding it
}

// spareSnapshotted takes the builds snapshots hold out of doomed.
func spareSnapshotted(store *catalog.Store, doomed []catalog.Instance) (rest []catalog.Instance, held []snapshotted, err error) {
	if len(doomed) == 0 {
		return doomed, nil, nil
	}
	ids := make([]int64, len(doomed))
	for i := range doomed {
		ids[i] = doomed[i].ID
	}
	by, err := store.DB.SnapshotsHolding(background(), ids)
	if err != nil || len(by) == 0 {
		return doomed, nil, err
	}
	for _, in := range doomed {
		if names := by[in.ID]; len(names) > 0 {
			held = append(held, snapshotted{in, names})
		} else {
			rest = append(rest, in)
		}
	}
	return rest, held, nil
}

// claimState takes the state for a prune: its lock when no daemon holds it
// (lk), else the mountpoint of the daemon that does.
func claimState(state string) (lk *catalog.StateLock, mnt string, err error) {
	deadline := time.Now().Add(3 * time.Second)
	for {
		lk, err := catalog.LockState(state, fmt.Sprintf("pid %d, pruning", os.Getpid()))
		if err == nil {
			return lk, "", nil
		}
		if !errors.Is(err, catalog.ErrStateLocked) {
			return nil, "", err
		}
		// The holder wrote who it is (mount: "pid N, mounted at DIR").
		b, _ := os.ReadFile(filepath.Join(state, "lock"))
		if _, m, ok := strings.Cut(strings.TrimSpace(string(b)), "mounted at "); ok {
			if _, found := mountConnection(m); found {
				return nil, m, nil
			}
		}
		// Another command holds it for a moment (import recovering staging
		// files), or a mount is on its way up.
		if time.Now().After(deadline) {
			return nil, "", fmt.Errorf("state %s: %v", state, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// readAtomsFile reads one atom a line; '#' starts a comment.
func readAtomsFile(path string) ([]*layout.Atom, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var atoms []*layout.Atom
	sc := bufio.NewScanner(f)
	for n := 1; sc.Scan(); n++ {
		line, _, _ := strings.Cut(sc.Text(), "#")
		line = strings.TrimSpace(line)
		if line == "" {
			continue
		}
		a, err := parseAtom(line)
		if err != nil {
			return nil, fmt.Errorf("%s:%d: %v", path, n, err)
		}
		atoms = append(atoms, a)
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("%s: %v", path, err)
	}
	return atoms, nil
}

// selectPrune reads the catalog in one snapshot, a CPV at a time (rows come
// ordered by CPV), and returns the builds the policy removes, how many
// builds stay, and the blobs of removed builds that a kept build shares
// (same bytes; their removal frees nothing).
func selectPrune(store *catalog.Store, policy catalog.PrunePolicy, protect []*layout.Atom) (doomed []catalog.Instance, kept int, shared map[string]bool, err error) {
	var (
		group     []catalog.Instance
		use       = map[int64]string{}
		protected = map[int64]bool{}
	)
	shared = map[string]bool{}
	flush := func() {
		d := catalog.SelectPrune(group, policy,
			func(in *catalog.Instance) string { return use[in.ID] },
			func(in *catalog.Instance) bool { return protected[in.ID] })
		if len(d) > 0 {
			gone := map[int64]bool{}
			for i := range d {
				gone[d[i].ID] = true
			}
			for i := range group {
				if !gone[group[i].ID] && group[i].Blob != "" {
					for j := range d {
						if d[j].Blob == group[i].Blob {
							shared[d[j].Blob] = true
						}
					}
				}
			}
		}
		doomed = append(doomed, d...)
		kept += len(group) - len(d)
		group = group[:0]
		clear(use)
		clear(protected)
	}
	err = store.DB.ForEachIndexed(background(), func(inst *catalog.Instance) error {
		if len(group) > 0 && group[0].CPV != inst.CPV {
			flush()
		}
		use[inst.ID] = inst.Meta["USE"]
		protected[inst.ID] = matchAtoms(protect, inst)
		in := *inst
		in.Meta = nil // only what the policy looks at stays in memory
		group = append(group, in)
		return nil
	})
	if err != nil {
		return nil, 0, nil, err
	}
	flush()
	return doomed, kept, shared, nil
}

func printRemoval(w *bufio.Writer, verb string, in *catalog.Instance) {
	fmt.Fprintf(w, "%s %s build %d (built %s, %d bytes): %s\n", verb, in.CPV, in.BuildID, builtText(in.BuildTime), in.Size, instPath(in))
	w.Flush()
}

// removeInBatches removes in catalog transactions of pruneBatch builds
// each, and drops their blobs after each commit unless a tombstone keeps
// them: a mount serving the state shows each batch at once and keeps its
// builds downloadable for its --removed-grace, as after rm, then drops
// their blobs itself; with no grace nothing else would drop them.
func removeInBatches(store *catalog.Store, doomed []catalog.Instance, done func(*catalog.Instance), kept func(*catalog.Instance, []string)) ([]catalog.Instance, error) {
	var removed []catalog.Instance
	for len(doomed) > 0 {
		n := min(pruneBatch, len(doomed))
		ids := make([]int64, n)
		for i := range ids {
			ids[i] = doomed[i].ID
		}
		batch, held, err := store.RemoveBatch(background(), ids)
		if err != nil {
			return removed, err
		}
		// Snapshots made since the builds were chosen hold these.
		for i := range doomed[:n] {
			if by := held[doomed[i].ID]; len(by) > 0 {
				kept(&doomed[i], by)
			}
		}
		doomed = doomed[n:]
		for i := range batch {
			store.DropBlob(background(), batch[i].Blob)
			done(&batch[i])
		}
		removed = append(removed, batch...)
	}
	return removed, nil
}

func lexists(p string) bool {
	_, err := os.Lstat(p)
	return err == nil
}

// bytesText is n in binary units for people.
func bytesText(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}
