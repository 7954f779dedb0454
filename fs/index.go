package fs

import (
	"bytes"
	"compress/gzip"
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"pkgdirfs/catalog"
	"pkgdirfs/layout"
)

// Index is the rendered Packages file of one catalog generation.
type Index struct {
	Generation int64
	Timestamp  int64 // TIMESTAMP: and the mtime of Packages and Packages.gz
	Plain      []byte
	Gz         []byte
}

// RenderIndex renders Packages from the catalog with the paths of the given
// layouts: the same bytes a mount with those layouts serves.
func RenderIndex(ctx context.Context, db *catalog.DB, lay Layouts) (*Index, error) {
	inos := newInoAllocator()
	for attempt := 0; ; attempt++ {
		snap, err := loadSnapshot(ctx, db, lay, inos)
		if err != nil {
			return nil, err
		}
		idx, err := renderFor(ctx, db, snap)
		if err != nil || idx != nil {
			return idx, err
		}
		if attempt > 50 {
			return nil, fmt.Errorf("catalog keeps changing while rendering the index")
		}
	}
}

// loadSnapshot reads the instances of the current generation. A commit between
// the two reads makes it read again, so a snapshot always matches one generation.
func loadSnapshot(ctx context.Context, db *catalog.DB, lay Layouts, inos *inoAllocator) (*snapshot, error) {
	for attempt := 0; ; attempt++ {
		gen, err := db.Generation(ctx)
		if err != nil {
			return nil, err
		}
		insts, err := db.Instances(ctx)
		if err != nil {
			return nil, err
		}
		ts, err := db.LastTimestamp(ctx)
		if err != nil {
			return nil, err
		}
		after, err := db.Generation(ctx)
		if err != nil {
			return nil, err
		}
		if after == gen {
			return buildSnapshot(gen, ts, insts, lay, inos), nil
		}
		if attempt > 50 {
			return nil, fmt.Errorf("catalog keeps changing while reading the tree")
		}
	}
}

// renderFor renders the index for snap; nil (and no error) if the catalog moved
// past snap's generation meanwhile (every commit bumps the generation, so equal
// generations before and after mean every read saw the same state).
func renderFor(ctx context.Context, db *catalog.DB, snap *snapshot) (*Index, error) {
	header, err := db.Header(ctx)
	if err != nil {
		return nil, err
	}
	ts, err := db.StampGeneration(ctx, snap.gen, time.Now().Unix())
	if errors.Is(err, catalog.ErrStaleGeneration) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var body bytes.Buffer
	n := 0
	err = db.ForEachIndexed(ctx, func(in *catalog.Instance) error {
		p, ok := snap.indexPath[in.ID]
		if !ok {
			return nil
		}
		pkg := make(map[string]string, len(in.Meta)+8)
		for k, v := range in.Meta {
			pkg[k] = v
		}
		pkg["CPV"] = in.CPV
		pkg["PATH"] = p
		pkg["SIZE"] = strconv.FormatInt(in.Size, 10)
		pkg["MD5"] = in.MD5
		pkg["SHA1"] = in.SHA1
		pkg["_mtime_"] = strconv.FormatInt(floorDiv(in.MtimeNs, 1e9), 10)
		// The catalog's BUILD_ID is authoritative for names and the index.
		pkg["BUILD_ID"] = strconv.FormatInt(in.BuildID, 10)
		body.Write(layout.RenderPackage(pkg, header))
		n++
		return nil
	})
	if err != nil {
		return nil, err
	}
	gen, err := db.Generation(ctx)
	if err != nil {
		return nil, err
	}
	if gen != snap.gen {
		return nil, nil
	}
	h := make(map[string]string, len(header)+3)
	for k, v := range header {
		h[k] = v
	}
	h["VERSION"] = "0"
	h["TIMESTAMP"] = strconv.FormatInt(ts, 10)
	h["PACKAGES"] = strconv.Itoa(n)
	var out bytes.Buffer
	out.Grow(body.Len() + 4096)
	out.Write(layout.RenderHeader(h))
	out.Write(body.Bytes())

	gz, err := gzipIndex(out.Bytes(), ts)
	if err != nil {
		return nil, err
	}
	return &Index{Generation: gen, Timestamp: ts, Plain: out.Bytes(), Gz: gz}, nil
}

// gzipIndex compresses like Portage (level 9, no file name, header mtime = TIMESTAMP).
func gzipIndex(b []byte, ts int64) ([]byte, error) {
	var buf bytes.Buffer
	zw, err := gzip.NewWriterLevel(&buf, gzip.BestCompression)
	if err != nil {
		return nil, err
	}
	zw.ModTime = time.Unix(ts, 0)
	zw.OS = 255
	if _, err := zw.Write(b); err != nil {
		return nil, err
	}
	if err := zw.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

func floorDiv(a, b int64) int64 {
	q := a / b
	if (a%b != 0) && ((a < 0) != (b < 0)) {
		q--
	}
	return q
}
