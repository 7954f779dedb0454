package catalog

import (
	"fmt"
	"strings"
	"time"
)

// Instance is one package instance or placeholder.
type Instance struct {
	ID          int64
	Category    string
	PN          string
	PF          string
	CPV         string // Category + "/" + PF
	BuildID     int64  // 0 = none (only a placeholder may have 0)
	BuildTime   int64
	Format      string // "xpak" | "gpkg"
	Compression string
	Size        int64
	MtimeNs     int64
	Mode        uint32 // permission bits, e.g. 0644
	MD5         string // lowercase hex
	SHA1        string // lowercase hex
	SHA256      string // lowercase hex
	Blob        string // file name relative to blobs/
	Signed      bool
	Placeholder bool // a 0-byte reservation, never in Packages
	CreatedNs   int64
	Meta        map[string]string // index values (internal names); nil unless loaded
}

// SliceNames sets Category, PF and PN from CPV and the byte lengths of
// category and pn, and Format: a backend that stores only the CPV and the
// lengths saves three strings per row of a 1,000,000-row tree load.
func (inst *Instance) SliceNames(catLen, pnLen int64, gpkg bool) error {
	cpv := inst.CPV
	if catLen <= 0 || catLen >= int64(len(cpv)) || cpv[catLen] != '/' || pnLen > int64(len(cpv))-catLen-1 {
		return fmt.Errorf("catalog: instance %d: malformed cpv %q", inst.ID, cpv)
	}
	inst.Category, inst.PF = cpv[:catLen], cpv[catLen+1:]
	inst.PN = inst.PF[:pnLen]
	inst.Format = "xpak"
	if gpkg {
		inst.Format = "gpkg"
	}
	return nil
}

// Refused is a file refused at ingest.
type Refused struct {
	ID     int64
	Path   string
	Reason string
	TimeNs int64
	Size   int64
}

// InsertInstance inserts inst and its Meta and sets inst.ID (any ID passed
// in is ignored: ids come from the backend and are never reused). CPV is
// filled from Category/PF when empty; CreatedNs from the clock when 0.
// A taken (cpv, build_id) yields an error wrapping ErrBuildIDTaken; the
// transaction stays usable, so the caller may try another id.
func (tx *Tx) InsertInstance(inst *Instance) (int64, error) {
	if inst.CPV == "" {
		inst.CPV = inst.Category + "/" + inst.PF
	}
	if inst.CPV != inst.Category+"/"+inst.PF || inst.Category == "" || inst.PF == "" ||
		!strings.HasPrefix(inst.PF, inst.PN) {
		return 0, fmt.Errorf("catalog: insert: inconsistent names category=%q pn=%q pf=%q cpv=%q",
			inst.Category, inst.PN, inst.PF, inst.CPV)
	}
	if inst.Format != "xpak" && inst.Format != "gpkg" {
		return 0, fmt.Errorf("catalog: insert %s: bad format %q", inst.CPV, inst.Format)
	}
	if inst.CreatedNs == 0 {
		inst.CreatedNs = time.Now().UnixNano()
	}
	id, err := tx.WriteTx.InsertInstance(inst)
	if err != nil {
		return 0, err
	}
	tx.touch(inst.CPV)
	if tx.inserted == nil {
		tx.inserted = make(map[int64]bool)
	}
	tx.inserted[id] = true
	// The high-water mark: a build id once given is never given again,
	// even after every row of the CPV is gone.
	if inst.BuildID > 0 {
		if err := tx.RaiseBuildIDHigh(inst.CPV, inst.BuildID); err != nil {
			return 0, err
		}
	}
	inst.ID = id
	return id, nil
}

// DeleteInstance deletes an instance and its Meta.
func (tx *Tx) DeleteInstance(id int64) error {
	cpv, err := tx.WriteTx.DeleteInstance(id)
	if err != nil {
		return err
	}
	tx.touch(cpv)
	return nil
}

// SetInstanceAttrs records a chmod or utimensat on an instance (the bytes stay).
func (tx *Tx) SetInstanceAttrs(id int64, mode uint32, mtimeNs int64) error {
	cpv, err := tx.WriteTx.SetInstanceAttrs(id, mode, mtimeNs)
	if err != nil {
		return err
	}
	tx.touch(cpv)
	return nil
}

// NextBuildID returns the highest build id cpv ever had, plus one (1 when
// none). Gaps are not reused: Portage allocates the same way, so ids keep
// increasing with time.
func (tx *Tx) NextBuildID(cpv string) (int64, error) {
	high, err := tx.MaxBuildID(cpv)
	if err != nil {
		return 0, err
	}
	return high + 1, nil
}

// SetHeader replaces the whole stored Packages header.
func (tx *Tx) SetHeader(h map[string]string) error {
	if err := tx.ReplaceHeader(h); err != nil {
		return err
	}
	tx.touch(HeaderChange)
	return nil
}
