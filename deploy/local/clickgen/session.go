package clickgen

import (
	"math/rand/v2"
	"net/url"
	"slices"
	"strings"

	"github.com/ecomstream/platform/deploy/local/seed"
)

// registeredShare is the share of visitors with a customer account, and
// loggedInShare the chance that a registered visitor is logged in during a
// visit. Most traffic is therefore anonymous, as on real shops.
const (
	registeredShare = 0.30
	loggedInShare   = 0.65
	maxSessionLen   = 40 // a cap so a rare long random walk cannot run forever
)

type visitor struct {
	anonID  string
	userID  string // "" for visitors without an account
	country int
	region  string // "" (null) for the few visitors geo-IP cannot place
	city    string
	client  int
}

func (g *Generator) buildVisitors(n int) {
	countryPick := newWeighted(countries, func(c country) float64 { return c.weight })
	clientPick := newWeighted(clients, func(c client) float64 { return c.weight })
	g.visitors = make([]visitor, n)
	custs := seed.Default().Customers
	customers := 0
	for i := range g.visitors {
		v := visitor{anonID: seed.UUID(g.rng), country: countryPick.pick(g.rng), client: clientPick.pick(g.rng)}
		// Registered visitors are the customers of the shared id seed, in
		// id order (u-000001, u-000002, ...; wrapping round past the last),
		// and browse from their own country, so clicks join the customers
		// table and the storefront's orders.
		if g.rng.Float64() < registeredShare {
			c := custs[customers%len(custs)]
			customers++
			g.registered = customers
			v.userID = c.CustomerID
			if ci := slices.IndexFunc(countries, func(k country) bool { return k.code == c.Country }); ci >= 0 {
				v.country = ci
			}
		}
		// Geo-IP resolves the country nearly always but not always the city.
		if g.rng.Float64() >= 0.03 {
			rs := countries[v.country].regions
			r := rs[g.rng.IntN(len(rs))]
			v.region, v.city = r.name, r.cities[g.rng.IntN(len(r.cities))]
		}
		g.visitors[i] = v
	}
	// Returning visitors: a Zipf law over the population makes some browsers
	// come back many times and most only once or twice.
	g.visitorZipf = rand.NewZipf(g.rng, 1.05, 20, uint64(n-1))
}

// action is a step in the funnel; the session's last action decides what can
// come next.
type action int

const (
	actLanding  action = iota // page_view of the entry page (home, category or promo)
	actHome                   // page_view of the home page
	actCategory               // page_view of a category page
	actSearch
	actProduct // product_view
	actAddToCart
	actCart // page_view of the cart
	actRemoveFromCart
	actCheckout // begin_checkout
	actPurchase
	actExit
	numActions
)

type step struct {
	next   action
	weight float64
}

// transitionTable holds the click-through rates between funnel steps. They
// are tuned so that roughly a third of sessions bounce, about one in ten adds
// to cart and around 2-3% purchase, close to typical e-commerce figures.
func transitionTable() [numActions][]step {
	return [numActions][]step{
		actLanding:        {{actSearch, 22}, {actCategory, 18}, {actProduct, 28}, {actExit, 32}},
		actHome:           {{actSearch, 30}, {actCategory, 30}, {actProduct, 25}, {actExit, 15}},
		actCategory:       {{actProduct, 62}, {actCategory, 10}, {actSearch, 12}, {actExit, 16}},
		actSearch:         {{actProduct, 62}, {actSearch, 14}, {actCategory, 6}, {actExit, 18}},
		actProduct:        {{actProduct, 40}, {actAddToCart, 9}, {actSearch, 10}, {actCategory, 14}, {actCart, 2}, {actExit, 25}},
		actAddToCart:      {{actProduct, 32}, {actCart, 28}, {actCheckout, 12}, {actExit, 28}},
		actCart:           {{actCheckout, 42}, {actRemoveFromCart, 18}, {actProduct, 15}, {actExit, 25}},
		actRemoveFromCart: {{actCart, 25}, {actProduct, 25}, {actCheckout, 15}, {actExit, 35}},
		actCheckout:       {{actPurchase, 55}, {actCart, 10}, {actExit, 35}},
		actPurchase:       {{actHome, 12}, {actExit, 88}},
	}
}

// transitions draws the next step of the funnel.
type transitions struct {
	steps [numActions][]step
	picks [numActions]weighted
}

func newTransitions() transitions {
	t := transitions{steps: transitionTable()}
	for a, steps := range t.steps {
		if len(steps) > 0 {
			t.picks[a] = newWeighted(steps, func(s step) float64 { return s.weight })
		}
	}
	return t
}

func (t *transitions) next(from action, rng *rand.Rand) action {
	return t.steps[from][t.picks[from].pick(rng)].next
}

type cartLine struct {
	product  int
	quantity int
}

type session struct {
	id       string
	v        *visitor
	loggedIn bool
	store    storefront
	origin   string // baseURL plus the storefront's locale, e.g. ".../en-us"
	last     action
	events   int
	url      string // current page
	referrer string // referrer of the current page
	category int    // category in focus (browsed or searched), -1 for none
	product  int    // last product viewed, -1 for none
	cart     []cartLine
}

// startSession begins a new visit in slot s: a returning or new visitor
// arriving through an acquisition channel.
func (g *Generator) startSession(s *session) {
	v := &g.visitors[g.visitorZipf.Uint64()]
	*s = session{
		id:       seed.UUID(g.rng),
		v:        v,
		loggedIn: v.userID != "" && g.rng.Float64() < loggedInShare,
		store:    countries[v.country].store,
		origin:   baseURL + "/" + countries[v.country].store.locale,
		category: -1,
		product:  -1,
		cart:     s.cart[:0],
	}
}

// advance moves the session one step through the funnel and fills e with the
// resulting event. A session that decides to exit is replaced by a new one,
// whose landing page view is the event.
func (g *Generator) advance(s *session, e *event) {
	next := actLanding
	if s.v != nil {
		next = g.transitions.next(s.last, g.rng)
		next = s.feasible(next)
		if s.events >= maxSessionLen {
			next = actExit
		}
	}
	if next == actExit || next == actLanding {
		g.startSession(s)
		next = actLanding
	}
	g.emit(s, next, e)
}

// feasible maps a step the cart cannot support onto browsing: nobody removes
// from or checks out an empty cart. A visitor without an account cannot buy
// (see signUp): they leave at checkout.
func (s *session) feasible(a action) action {
	if len(s.cart) == 0 && (a == actCart || a == actRemoveFromCart || a == actCheckout || a == actPurchase) {
		return actProduct
	}
	if a == actPurchase && s.v.userID == "" {
		return actExit
	}
	return a
}

// Checkout needs an account, as on most shops, so that every purchase is by
// a customer of the shared id seed and its order can exist in the storefront
// (whose orders are all by seed customers). At begin_checkout a registered
// visitor who is not logged in logs in, and a visitor without an account
// signs up: they become a seed customer of their own country that no other
// visitor is (taken from the end of the seed's customer list, while the
// registered population takes it from the start), and stay that customer on
// later visits. From then on the session's events carry the user_id, the
// way a shop's clickstream shows a login mid-session.

// signUp gives v an account, if the seed has a customer of v's country left
// (it always has, but for very large populations: then the visitor leaves at
// checkout, see feasible).
func (g *Generator) signUp(v *visitor) {
	if g.signUps == nil {
		g.signUps = map[string][]int{}
		custs := seed.Default().Customers
		taken := min(g.registered, len(custs))
		for i := len(custs) - 1; i >= taken; i-- {
			c := custs[i].Country
			g.signUps[c] = append(g.signUps[c], i)
		}
	}
	code := countries[v.country].code
	left := g.signUps[code]
	if len(left) == 0 {
		return
	}
	v.userID = seed.Default().Customers[left[0]].CustomerID
	g.signUps[code] = left[1:]
}

// emit fills e for action a and updates the session state.
func (g *Generator) emit(s *session, a action, e *event) {
	v := s.v
	c := clients[v.client]
	*e = event{
		id:         seed.UUID(g.rng),
		ts:         g.timestamp(),
		anonID:     v.anonID,
		sessionID:  s.id,
		userAgent:  c.userAgent,
		deviceType: c.deviceType,
		os:         c.os,
		browser:    c.browser,
		country:    countries[v.country].code,
		region:     v.region,
		city:       v.city,
	}
	if s.loggedIn {
		e.userID = v.userID
	}
	origin := s.origin

	switch a {
	case actLanding:
		ch := channels[g.channelPick.pick(g.rng)]
		var path string
		switch ch.landing {
		case landHome:
			path = "/"
		case landCategory:
			s.category = g.categoryPick.pick(g.rng)
			path = "/c/" + categories[s.category].slug
		case landPromo:
			path = "/promo/" + promos[g.rng.IntN(len(promos))]
		}
		q := ch.query
		if strings.Contains(q, "{gclid}") {
			q = strings.Replace(q, "{gclid}", seed.UUID(g.rng)[:8]+seed.UUID(g.rng)[24:], 1)
		}
		e.typ = "page_view"
		s.navigate(origin+path+q, ch.referrer)
	case actHome:
		e.typ = "page_view"
		s.category = -1
		s.navigate(origin+"/", s.url)
	case actCategory:
		e.typ = "page_view"
		s.category = g.categoryPick.pick(g.rng)
		s.navigate(origin+"/c/"+categories[s.category].slug, s.url)
	case actSearch:
		e.typ = "search"
		s.category = g.categoryPick.pick(g.rng)
		e.searchQuery = g.searchQuery(s.category)
		s.navigate(origin+"/search?q="+url.QueryEscape(e.searchQuery), s.url)
	case actProduct:
		e.typ = "product_view"
		s.product = g.pickProduct(s.category)
		s.category = g.products[s.product].category
		s.navigate(origin+g.products[s.product].path, s.url)
		g.setProduct(e, s, s.product)
	case actAddToCart:
		// Fired on the product page: the page, and so its referrer, is the
		// one of the product_view before it.
		e.typ = "add_to_cart"
		if s.product < 0 { // only for standalone (broken) events
			s.product = g.pickProduct(-1)
			s.navigate(origin+g.products[s.product].path, s.url)
		}
		e.quantity = g.quantity()
		g.setProduct(e, s, s.product)
		s.addToCart(s.product, e.quantity)
	case actCart:
		e.typ = "page_view"
		s.navigate(origin+"/cart", s.url)
	case actRemoveFromCart:
		e.typ = "remove_from_cart"
		if s.url != origin+"/cart" {
			s.navigate(origin+"/cart", s.url)
		}
		i := g.rng.IntN(len(s.cart))
		line := &s.cart[i]
		e.quantity = line.quantity
		if line.quantity > 1 && g.rng.IntN(2) == 0 {
			e.quantity = 1
		}
		g.setProduct(e, s, line.product)
		line.quantity -= e.quantity
		if line.quantity == 0 {
			s.cart = append(s.cart[:i], s.cart[i+1:]...)
		}
	case actCheckout:
		e.typ = "begin_checkout"
		if v.userID == "" {
			g.signUp(v)
		}
		if v.userID != "" {
			s.loggedIn = true
			e.userID = v.userID
		}
		s.navigate(origin+"/checkout", s.url)
	case actPurchase:
		e.typ = "purchase"
		e.orderID = "o-" + seed.UUID(g.rng)
		s.navigate(origin+"/checkout/confirmation?order="+e.orderID, s.url)
		p := &Purchase{OrderID: e.orderID, CustomerID: e.userID, At: e.ts, Lines: make([]PurchaseLine, len(s.cart))}
		for i, l := range s.cart {
			p.Lines[i] = PurchaseLine{ProductID: g.products[l.product].id, Quantity: int64(l.quantity)}
		}
		e.purchase = p
		s.cart = s.cart[:0]
	}
	e.pageURL, e.referrer = s.url, s.referrer
	s.last = a
	s.events++
}

func (s *session) navigate(to, from string) {
	s.url, s.referrer = to, from
}

func (s *session) addToCart(p, qty int) {
	for i := range s.cart {
		if s.cart[i].product == p {
			s.cart[i].quantity += qty
			return
		}
	}
	s.cart = append(s.cart, cartLine{product: p, quantity: qty})
}

func (g *Generator) setProduct(e *event, s *session, p int) {
	e.productID = g.products[p].id
	e.currency = s.store.currency
	e.price = g.products[p].price[e.currency]
	e.hasPrice = true
}

// pickProduct chooses a product, usually from the category in focus, by
// popularity.
func (g *Generator) pickProduct(cat int) int {
	if cat >= 0 && g.catZipf[cat] != nil && g.rng.Float64() < 0.8 {
		return g.byCategory[cat][g.catZipf[cat].Uint64()]
	}
	return g.popular[g.productZipf.Uint64()]
}

func (g *Generator) quantity() int {
	switch x := g.rng.Float64(); {
	case x < 0.82:
		return 1
	case x < 0.95:
		return 2
	default:
		return 3 + g.rng.IntN(3)
	}
}

func (g *Generator) searchQuery(cat int) string {
	c := categories[cat]
	q := c.keywords[g.rng.IntN(len(c.keywords))]
	switch x := g.rng.Float64(); {
	case x < 0.15:
		q = strings.ToLower(c.brands[g.rng.IntN(len(c.brands))]) + " " + q
	case x < 0.55:
		q = searchModifiers[g.rng.IntN(len(searchModifiers))] + q
	case x < 0.60 && len(q) > 4:
		// A dropped letter: real search logs are full of typos.
		i := 1 + g.rng.IntN(len(q)-2)
		q = q[:i] + q[i+1:]
	}
	return q
}
