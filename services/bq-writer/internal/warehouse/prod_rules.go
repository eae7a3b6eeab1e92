package warehouse

// The rules of the prod layer's one-row-per-key relations, for code outside this package that
// checks a backend's prod views against them (internal/prodmodel).

// FirstCopy returns the index of the copy of an event_id that comes first in the dedup order
// (compareCopies): the row prod.fact_events keeps, in both backends. Of copies equal in that
// order (the same business row) the lowest source coordinates win, then the lowest index. It
// returns -1 for no copies.
func FirstCopy(copies []EventRow) int {
	first := -1
	for i := range copies {
		if first < 0 || compareCopies(&copies[i], &copies[first]) < 0 ||
			compareCopies(&copies[i], &copies[first]) == 0 && compareCoords(&copies[i], &copies[first]) < 0 {
			first = i
		}
	}
	return first
}
