package catalog

// Summary is what pkgdirfs stats reports: figures over the package
// instances (placeholders apart).
type Summary struct {
	Instances    int64
	Placeholders int64
	CPVs         int64
	Bytes        int64
	Categories   []CategoryBytes // largest first
	MostBuilds   []CPVBuilds     // most builds first
	Refused      int64
	// Oldest and Newest are by Portage's order (BUILD_TIME, then BUILD_ID)
	// among instances with a BUILD_TIME; nil if none has one.
	Oldest, Newest *Instance
}

// CategoryBytes is one category's share.
type CategoryBytes struct {
	Category  string
	Instances int64
	Bytes     int64
}

// CPVBuilds is the number of builds of one CPV.
type CPVBuilds struct {
	CPV    string
	Builds int64
	Bytes  int64
}

// BlobUsage counts the files in blobs/ and their bytes (what the disk
// holds, orphans of interrupted commits included).
func (s *Store) BlobUsage() (files, bytes int64, err error) {
	err = s.blobs.Walk(func(_ string, size int64) error {
		files++
		bytes += size
		return nil
	})
	return files, bytes, err
}
