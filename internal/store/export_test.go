package store

// PagesWritten is pagesWritten for the external tests (benchmarks).
func PagesWritten(s *Store) int64 { return pagesWritten(s) }
