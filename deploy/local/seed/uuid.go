package seed

import "math/rand/v2"

// UUID returns a random (version 4) UUID drawn from rng, so the ids a seeded
// generator makes (clickgen's events and sessions, the storefront's orders and
// webhook deliveries) are unique within a run and the same across runs with
// the same seed.
func UUID(rng *rand.Rand) string {
	const hex = "0123456789abcdef"
	hi := rng.Uint64()&^(0xf<<12) | 0x4<<12
	lo := rng.Uint64()&^(0x3<<62) | 0x2<<62
	var b [36]byte
	j := 0
	for i := range 16 {
		if i == 4 || i == 6 || i == 8 || i == 10 {
			b[j] = '-'
			j++
		}
		var v byte
		if i < 8 {
			v = byte(hi >> (56 - 8*i))
		} else {
			v = byte(lo >> (56 - 8*(i-8)))
		}
		b[j], b[j+1] = hex[v>>4], hex[v&0xf]
		j += 2
	}
	return string(b[:])
}
