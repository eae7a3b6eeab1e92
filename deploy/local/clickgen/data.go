package clickgen

// Static tables behind the simulation. They are package-level only because Go
// has no constant slices: nothing ever writes to them. Weights are relative, not percentages;
// they are rough shapes of a mid-size western web shop (mobile-heavy, US-led,
// a long tail of countries), which is enough for dashboards and partitioning
// to look like production without pretending to be a market model.

// baseURL is the storefront origin. Every valid page_url starts with it, so a
// rule that checks "absolute https URL" and one that checks the host agree.
const baseURL = "https://shop.ecomstream.dev"

// Currencies the storefronts sell in, indexed by storefront.currency. Minor
// digits follow ISO 4217 (JPY has none), which is what the contract's price
// rule ("at most as many fraction digits as the currency has") checks.
const (
	curUSD = iota
	curEUR
	curGBP
	curJPY
	numCurrencies
)

var currencyCodes = [numCurrencies]string{"USD", "EUR", "GBP", "JPY"}

var currencyMinorDigits = [numCurrencies]int{2, 2, 2, 0}

type storefront struct {
	locale   string // path prefix, e.g. "en-us"
	currency int
}

type region struct {
	name   string
	cities []string
}

type country struct {
	code    string
	weight  float64
	store   storefront
	regions []region
}

// countries: a few non-ASCII city names on purpose, so UTF-8 travels the
// whole pipeline in ordinary traffic rather than only in a special test.
var countries = []country{
	{"US", 38, storefront{"en-us", curUSD}, []region{
		{"CA", []string{"San Francisco", "Los Angeles", "San Diego"}},
		{"NY", []string{"New York", "Buffalo"}},
		{"TX", []string{"Austin", "Houston", "Dallas"}},
		{"WA", []string{"Seattle"}},
		{"IL", []string{"Chicago"}},
		{"FL", []string{"Miami", "Orlando"}},
	}},
	{"GB", 10, storefront{"en-gb", curGBP}, []region{
		{"England", []string{"London", "Manchester", "Bristol"}},
		{"Scotland", []string{"Edinburgh", "Glasgow"}},
	}},
	{"DE", 9, storefront{"de-de", curEUR}, []region{
		{"Bavaria", []string{"München", "Nürnberg"}},
		{"Berlin", []string{"Berlin"}},
		{"Hamburg", []string{"Hamburg"}},
	}},
	{"FR", 6, storefront{"fr-fr", curEUR}, []region{
		{"Île-de-France", []string{"Paris"}},
		{"Auvergne-Rhône-Alpes", []string{"Lyon"}},
	}},
	{"JP", 6, storefront{"ja-jp", curJPY}, []region{
		{"Tokyo", []string{"Tokyo"}},
		{"Osaka", []string{"Osaka"}},
	}},
	{"CA", 5, storefront{"en-us", curUSD}, []region{
		{"Ontario", []string{"Toronto", "Ottawa"}},
		{"Quebec", []string{"Montréal"}},
		{"British Columbia", []string{"Vancouver"}},
	}},
	{"NL", 3, storefront{"nl-nl", curEUR}, []region{
		{"North Holland", []string{"Amsterdam"}},
		{"South Holland", []string{"Rotterdam"}},
	}},
	{"ES", 3, storefront{"es-es", curEUR}, []region{
		{"Madrid", []string{"Madrid"}},
		{"Catalonia", []string{"Barcelona"}},
	}},
	{"IT", 3, storefront{"it-it", curEUR}, []region{
		{"Lombardy", []string{"Milan"}},
		{"Lazio", []string{"Rome"}},
	}},
	{"AU", 3, storefront{"en-us", curUSD}, []region{
		{"New South Wales", []string{"Sydney"}},
		{"Victoria", []string{"Melbourne"}},
	}},
	{"BR", 2, storefront{"en-us", curUSD}, []region{
		{"São Paulo", []string{"São Paulo"}},
	}},
	{"IN", 2, storefront{"en-us", curUSD}, []region{
		{"Maharashtra", []string{"Mumbai"}},
		{"Karnataka", []string{"Bengaluru"}},
	}},
	{"IE", 1, storefront{"en-ie", curEUR}, []region{
		{"Leinster", []string{"Dublin"}},
	}},
	{"MX", 1, storefront{"en-us", curUSD}, []region{
		{"Mexico City", []string{"Mexico City"}},
	}},
}

type client struct {
	weight     float64
	deviceType string
	os         string
	browser    string
	userAgent  string
}

var clients = []client{
	{24, "desktop", "Windows", "Chrome", "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36"},
	{22, "mobile", "iOS", "Safari", "Mozilla/5.0 (iPhone; CPU iPhone OS 18_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/18.1 Mobile/15E148 Safari/604.1"},
	{18, "mobile", "Android", "Chrome", "Mozilla/5.0 (Linux; Android 10; K) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Mobile Safari/537.36"},
	{9, "desktop", "macOS", "Safari", "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/18.1 Safari/605.1.15"},
	{7, "desktop", "macOS", "Chrome", "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36"},
	{6, "desktop", "Windows", "Edge", "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36 Edg/131.0.0.0"},
	{4, "mobile", "Android", "Samsung Internet", "Mozilla/5.0 (Linux; Android 14; SAMSUNG SM-S921B) AppleWebKit/537.36 (KHTML, like Gecko) SamsungBrowser/26.0 Chrome/122.0.0.0 Mobile Safari/537.36"},
	{3, "desktop", "Windows", "Firefox", "Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:133.0) Gecko/20100101 Firefox/133.0"},
	{3, "tablet", "iPadOS", "Safari", "Mozilla/5.0 (iPad; CPU OS 18_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/18.1 Mobile/15E148 Safari/604.1"},
	{2, "mobile", "iOS", "Chrome", "Mozilla/5.0 (iPhone; CPU iPhone OS 18_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) CriOS/131.0.6778.73 Mobile/15E148 Safari/604.1"},
	{1, "tablet", "Android", "Chrome", "Mozilla/5.0 (Linux; Android 14; SM-X710) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36"},
	{1, "desktop", "Linux", "Firefox", "Mozilla/5.0 (X11; Linux x86_64; rv:133.0) Gecko/20100101 Firefox/133.0"},
}

// Acquisition channels decide the landing page and the referrer of a visit.
type channel struct {
	weight   float64
	referrer string // "" means null: typed URL, bookmark, or a mail client that strips it
	query    string // appended to the landing URL; "{gclid}" is replaced per visit
	landing  landing
}

type landing int

const (
	landHome landing = iota
	landCategory
	landPromo
)

var channels = []channel{
	{35, "", "", landHome},
	{22, "https://www.google.com/", "", landCategory},
	{8, "https://www.google.com/", "?gclid={gclid}", landCategory},
	{5, "https://www.google.com/", "", landHome},
	{4, "https://www.bing.com/", "", landCategory},
	{2, "https://duckduckgo.com/", "", landHome},
	{6, "", "?utm_source=newsletter&utm_medium=email&utm_campaign=weekly_digest", landCategory},
	{4, "", "?utm_source=newsletter&utm_medium=email&utm_campaign=black_friday", landPromo},
	{4, "https://l.instagram.com/", "?utm_source=instagram&utm_medium=social&utm_campaign=new_arrivals", landPromo},
	{3, "https://l.facebook.com/", "?utm_source=facebook&utm_medium=social", landCategory},
	{2, "https://www.reddit.com/", "", landCategory},
	{2, "https://www.dealsaffiliate.example/", "?utm_source=affiliate&utm_medium=referral", landPromo},
}

var promos = []string{"black-friday", "new-arrivals", "winter-sale"}

// category: the products themselves (names, brands, list prices) come from
// the shared id seed (deploy/local/seed), whose categories have these slugs.
type category struct {
	slug     string
	weight   float64 // share of browsing that starts in the category
	brands   []string
	keywords []string // search terms people type for this category
}

var categories = []category{
	{"shoes", 14,
		[]string{"Northpeak", "Strider", "Velo"},
		[]string{"running shoes", "trail shoes", "white sneakers", "hiking boots", "sandals"}},
	{"apparel", 18,
		[]string{"Kestrel", "Urbanline", "Northpeak"},
		[]string{"hoodie", "rain jacket", "black t shirt", "leggings", "fleece jacket", "chinos"}},
	{"electronics", 16,
		[]string{"Sonance", "Voltix", "Arcwave"},
		[]string{"wireless headphones", "bluetooth speaker", "smartwatch", "usb c charger", "earbuds", "power bank"}},
	{"home", 14,
		[]string{"Hearth & Co", "Lumen", "Kitchenry"},
		[]string{"coffee grinder", "chef knife", "cast iron pan", "desk lamp", "throw blanket"}},
	{"beauty", 10,
		[]string{"Dewly", "Pure Botanics"},
		[]string{"face serum", "shampoo", "lip balm", "sunscreen"}},
	{"sports", 12,
		[]string{"Corefit", "Velo", "Northpeak"},
		[]string{"yoga mat", "dumbbells", "water bottle", "bike helmet", "resistance bands"}},
	{"toys", 8,
		[]string{"Brickly", "Playwell"},
		[]string{"building blocks", "puzzle 1000 pieces", "plush toy", "board game"}},
	{"books", 8,
		[]string{"Inkwell Press", "Harbor Books"},
		[]string{"cookbook", "novel", "travel guide", "notebook"}},
}

var searchModifiers = []string{"", "", "", "", "best ", "cheap ", "black ", "women's ", "men's ", "kids ", "waterproof ", "sale "}
