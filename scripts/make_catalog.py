"""Generate synthetic product data in the AmazonTitles-1.3MM ``trn.json`` shape.

The real ``trn.json`` cannot be shipped or downloaded here, so this script makes
stand-ins for it:

* the small demo catalog ``data/sample_catalog.json`` that the pipeline runs on
  out of the box (``--demo``: 400 rows, seed 42, a few benign quirks), and
* full-size synthetic benchmark input (e.g. ``--rows 2250000 --quirk-rate 0.05``)
  with the defects the cleaning stage must survive.

Each line is one JSON object with ``uid`` (10-char ASIN or ISBN-10), ``title``,
``content`` (the description), ``target_ind`` (label ids) and ``target_rel``
(1.0 per label). Titles and descriptions are built from per-category word lists
and sentence templates, so a description always repeats the title's facts
(brand, item, colour, material, size). Output is reproducible byte for byte for
a given seed, quirk rate and quirk list; rows without a quirk do not depend on
the quirk settings at all, because quirks draw from their own random stream.

Only the standard library is used.
"""

import argparse
import json
import os
import random
import sys
from collections.abc import Iterable, Iterator, Sequence

Record = dict | str | bytes

N_LABELS = 1_305_265  # label count of AmazonTitles-1.3MM

QUIRK_KINDS = (
    "html_entities",
    "empty_content",
    "empty_title",
    "blank_title",
    "duplicate_row",
    "duplicate_title",
    "csv_doubled_quotes",
    "stringified_targets",
    "control_chars",
    "stray_whitespace",
    "truncated_json",
    "non_object",
    "null_field",
    "wrong_field_name",
    "invalid_utf8",
)
# Quirks that still leave every line a valid JSON object with the right fields.
# A repeated name is drawn more often: entities and stray whitespace are common
# in the real file, while a demo needs only one or two empty or duplicate rows.
DEMO_QUIRK_KINDS = (
    "html_entities",
    "html_entities",
    "stray_whitespace",
    "stray_whitespace",
    "empty_content",
    "duplicate_row",
)
DEMO_ROWS = 400
DEMO_SEED = 42
DEMO_QUIRK_RATE = 0.03

# Slots drawn as three distinct values, ``{x}``, ``{x2}`` and ``{x3}``, so that
# the opening sentence and a body sentence do not repeat the same phrase.
PAIRED_SLOTS = frozenset({"feature", "use", "kw", "theme", "room"})
ISBN_CATEGORIES = frozenset({"fiction", "nonfiction"})

# Vocabulary, one text block per category. Each line is "key: value"; lines
# that start with spaces continue the line above. Keys:
#   title / open / body / close  a template (repeatable); {slot} is the title
#       form of a value, {slot.low} its in-sentence form. Alternative wordings
#       of one body sentence are separated by " || ". {brand.poss} is the
#       possessive ("Acme's", "Acme Labs'").
#   item NAME   the slot lists that replace the category's for that item,
#       as "slot=a|b|c; slot=d|e" or "slot=@name" for a list defined as
#       "@name: ..." (such lists are only used through items).
#   any other   a slot: "|"-separated values; "Title Form=text form" sets the
#       in-sentence form when lower-casing the title form is not enough.
SPECS: dict[str, str] = {
    "clothing": """\
brand: Northbound|Loomwell|Urban Thread|Cedar & Pine|Harbor Lane|Kestrel Supply|
  Bluebird Basics|Tallow & Twine|Everyday Republic|Summit Weave|Fernhill|
  Marlow & Finch
who: Men's|Women's|Unisex|Boys'|Girls'
color: Black|Charcoal Heather|Navy|Olive Green|Burgundy|Oatmeal|Dusty Rose|
  Royal Blue|Camel|Forest Green|Light Grey|Rust|Ivory|Slate Blue
size: X-Small|Small|Medium|Large|X-Large|XX-Large|3X-Large
perk: Moisture-Wicking|Lightweight|Breathable|Wrinkle-Resistant|Water-Resistant|
  Quick-Dry|Packable|Thermal|Stretch|Soft-Washed
kw: Tagless|Machine Washable|Side Pockets|Relaxed Fit|Slim Fit|UPF 50+|Anti-Pill|
  Reinforced Seams|Pre-Shrunk|Four-Way Stretch|Year-Round Comfort|Classic Fit
feature: ribbed cuffs and hem that hold their shape|
  a tagless neckline that never itches|reinforced double-needle stitching|
  two deep side pockets|a soft brushed interior|flatlock seams that won't chafe|
  a relaxed drop-shoulder cut|a hidden zip pocket for keys and cards|
  colorfast dye that won't fade wash after wash|pre-shrunk fabric that keeps its fit
use: weekend errands|the office|travel days|casual Fridays|chilly mornings|
  post-workout coffee runs|outdoor concerts|lounging at home|date night|campus life
item Pullover Hoodie: material=Cotton Fleece|Organic Cotton|French Terry|
  Recycled Fleece
item Crewneck Sweater: material=Merino Wool|Cotton Knit|Cashmere Blend|Cable Knit
item Denim Jacket: material=Stretch Denim|Washed Denim|Organic Denim
item Polo Shirt: material=Pique Cotton|Performance Jersey|Supima Cotton
item Rain Jacket: material=Ripstop Nylon|Recycled Polyester
item Cardigan: material=Merino Wool|Waffle Knit|Cotton Blend
item Jogger: material=French Terry|Stretch Twill|Cotton Fleece
item Flannel Shirt: material=Brushed Cotton Flannel|Organic Flannel
item Puffer Vest: material=Quilted Nylon|Recycled Down
item Crew Neck T-Shirt: material=Combed Cotton|Slub Jersey|Tri-Blend|Pima Cotton
item Quarter-Zip Pullover: material=Performance Fleece|Waffle Knit|Cotton Blend
item Chore Coat: material=Cotton Canvas|Waxed Canvas|Corduroy
item Wrap Dress: material=Viscose Jersey|Linen Blend|Crinkle Chiffon; who=Women's|
  Juniors'|Girls'
item Midi Skirt: material=Satin|Linen Blend|Pleated Chiffon; who=Women's|Juniors'
title: {brand} {who} {perk} {material} {item}, {color}, {size}
title: {who} {item} by {brand} - {perk} {material}, {kw}, {color}, {size}
title: {brand} {who} {material} {item} - {kw}, {kw2}, {color}, {size}
title: {who} {perk} {item} {color} {size} - {brand}
title: {brand} {who} {item} in {material}, {kw} & {kw2} ({color}, {size})
open: The {brand} {item} is cut from {perk.low} {material.low} and finished in a
  rich {color.low} shade.
open: This {who.low} {item.low} pairs {perk.low} {material.low} with a clean, modern
  silhouette in {color.low}.
open: Stay comfortable all day in the {brand} {item}, made from {material.low} in a
  versatile {color.low} colorway.
open: Crafted from {material.low}, this {color.low} {item.low} from {brand} is built
  for {use3}.
body: It features {feature}, plus {feature2}. || Thoughtful details include
  {feature} and {feature2}.
body: The {perk.low} fabric keeps you comfortable from {use} to {use2}.
body: Size {size} fits true to size; if you're between sizes, we recommend sizing up
  for a roomier feel.
body: It's an easy choice for {use3}, and it layers well when the temperature drops.
body: Machine wash cold with like colors and tumble dry low to keep the {color.low}
  looking fresh.
body: The {material.low} gets softer with every wash without losing its shape.
body: Key features: {kw}, {kw2}.
body: Our design team tested dozens of fabrics before landing on this {material.low}
  - it's that good.
close: Backed by {brand.poss} 60-day fit guarantee.
close: A wardrobe staple you'll reach for again and again.
close: Makes a thoughtful gift for birthdays and holidays.
close: Add it to your cart and upgrade your everyday rotation.
""",
    "kitchen": """\
brand: Saltbox Kitchen|Brightfold|Oak & Ember|Culinex|Tidewater Home|Silverline|
  Nordhaus|PrepRight|Mesa Grove|Emberly|Copperleaf|Hearthwise
color: Matte Black|Brushed Silver|Sage Green|Cream|Cherry Red|Navy|Charcoal|Natural|
  Copper|Slate Grey|Oyster White
perk: Professional-Grade|Heavy-Duty|Premium|Restaurant-Quality|Everyday|
  Heirloom-Quality|Compact|Chef-Designed|Space-Saving
kw: Easy to Clean|Gift Boxed|Lifetime Warranty|PFAS-Free|BPA-Free|Space Saving|
  Food Safe|Built to Last|Kitchen Essential|Housewarming Gift|Sustainably Made|
  Chef Approved
feature: a sturdy build that won't warp over time|
  surfaces that resist stains and odors|a comfortable grip, even with wet hands|
  food-safe materials free of PFAS and BPA|a compact footprint that's easy to store|
  a polished finish that looks great on open shelving|
  a balanced weight that feels right in the hand|
  smooth, rounded edges for safe handling|
  a lifetime warranty against manufacturing defects
use: weeknight dinners|holiday baking|meal prep Sundays|family brunches|
  small apartment kitchens|camping trips|entertaining guests|everyday cooking|
  batch cooking|date-night dinners
item Skillet: material=Cast Iron|Tri-Ply Stainless Steel|Hard-Anodized Aluminum|
  Carbon Steel|Ceramic Nonstick; size=8-Inch|10-Inch|12-Inch
item Dutch Oven: material=Enameled Cast Iron|Cast Iron; size=4.5-Quart|5.5-Quart|
  7-Quart
item Chef's Knife: material=German Stainless Steel|Damascus Steel|High-Carbon Steel|
  Japanese VG-10 Steel; size=6-Inch|8-Inch|10-Inch
item Cutting Board: material=Acacia Wood|Bamboo|End-Grain Walnut|Teak|Maple;
  size=12x9 Inch|17x11 Inch|20x15 Inch
item Mixing Bowl Set: material=Stainless Steel|Borosilicate Glass|Melamine|Ceramic;
  size=3-Piece|5-Piece|8-Piece
item Saucepan: material=Tri-Ply Stainless Steel|Hard-Anodized Aluminum|Copper Core;
  size=1.5-Quart|2-Quart|3-Quart
item French Press: material=Borosilicate Glass|Double-Wall Stainless Steel;
  size=20 oz|34 oz|50 oz
item Food Storage Container Set: material=Borosilicate Glass|BPA-Free Plastic;
  size=10-Piece|18-Piece|24-Piece
item Baking Sheet Set: material=Aluminized Steel|Nonstick Carbon Steel|
  Commercial Aluminum; size=2-Piece|3-Piece
item Salad Spinner: material=BPA-Free Plastic|Stainless Steel; size=4-Quart|5-Quart
item Knife Block Set: material=German Stainless Steel|High-Carbon Steel;
  size=8-Piece|14-Piece|15-Piece
item Gooseneck Kettle: material=Stainless Steel|Matte Enamel Steel; size=0.9-Liter|
  1.2-Liter
title: {brand} {size} {material} {item}, {perk}, {color} - {kw}
title: {brand} {item} {size} - {perk} {material}, {kw}, {color}
title: {perk} {material} {item} by {brand}, {size}, {kw} & {kw2}
title: {brand} {size} {item} - {material}, {kw}, {kw2}, {color}
title: {brand} {material} {item} ({size}, {color}) - {kw} & {kw2}
open: Bring {perk.low} performance to your kitchen with the {brand} {size.low}
  {item.low}, made from {material.low}.
open: The {brand} {item} is crafted from {material.low} and finished in {color.low}
  for a look that's as good as it performs.
open: Built from {material.low}, this {size.low} {item.low} is ready for {use3} and
  everything in between.
open: Whether you're cooking for one or hosting a crowd, the {brand} {material}
  {item} makes kitchen prep simple.
body: It offers {feature} and {feature2}. || Home cooks love its {perk.low}
  construction and {feature}. || Thoughtful touches include {feature} - small
  details that make a big difference.
body: The {color.low} finish adds a modern touch to any countertop.
body: Hand wash with warm, soapy water and dry thoroughly to keep it looking new for
  years.
body: It's the right size for {use}, yet easy to tuck into a cabinet when you're
  done. || From {use} to {use2}, it's a dependable tool you'll reach for daily.
body: Every piece is inspected by hand before it leaves our facility.
body: Key features: {kw}, {kw2}.
close: Upgrade your home kitchen today.
close: Makes a wonderful housewarming or wedding gift.
close: Cook with confidence - and enjoy every bite.
close: Backed by {brand.poss} lifetime warranty.
""",
    "toys": """\
brand: Wonderkin|Tiny Tinker|BrightBlock|Playvale|Marble & Moss|Huckleberry Toys|
  Jolly Otter|Starwise|Pebble Pals|Kiteworks|Little Lantern|Sprout & Sparrow
age: Toddlers|Kids 3+=kids ages 3 and up|Ages 4-8=children ages 4 to 8|
  Kids 6+=kids 6 and older|Ages 8-12=kids ages 8 to 12|Preschoolers|Boys and Girls
color: Rainbow|Pastel|Bright Primary|Ocean Blue|Sunshine Yellow|Mint Green|
  Berry Pink|Classic Red|Natural Wood|Lavender
perk: Educational|STEM|Montessori|Creative|Non-Toxic|Screen-Free|Sensory|
  Imaginative|Award-Winning
kw: Birthday Gift|Travel Friendly|Storage Bag Included|Fine Motor Skills|
  Screen-Free Fun|STEM Learning|Safe Materials|Easy Cleanup|Holiday Gift|
  Educational Play|Family Fun|Open-Ended Play
feature: chunky pieces that are easy for little hands to grip|
  rounded edges and non-toxic, water-based paint|
  a sturdy storage bag for quick cleanup|
  an illustrated idea booklet with dozens of builds|
  colors that stay bright after years of play|
  testing to ASTM F963 and CPSIA safety standards|
  endless open-ended play possibilities|
  parts that click together with a satisfying snap|
  a gift-ready box with no frustrating twist ties
use: rainy afternoons|family game night|classroom centers|road trips|quiet time|
  birthday parties|playdates|holiday mornings|homeschool lessons|grandparent visits
item Building Block Set: material=ABS Plastic|Sustainably Sourced Wood;
  size=120-Piece|250-Piece|500-Piece
item Wooden Train Set: material=Beech Wood|Maple Wood; size=32-Piece|48-Piece|
  60-Piece
item Plush Dinosaur: material=Super-Soft Plush|Recycled Polyester Plush;
  size=8-Inch|12-Inch|18-Inch
item Magnetic Tile Set: material=Food-Grade ABS Plastic; size=40-Piece|60-Piece|
  100-Piece
item Remote Control Car: material=Shock-Resistant ABS; size=1:16 Scale|1:20 Scale|
  1:24 Scale; color=Fire Red|Racing Blue|Lime Green|Stealth Black
item Floor Puzzle: material=Thick Recycled Cardboard; size=24-Piece|48-Piece|
  100-Piece
item Play Kitchen: material=Solid Wood|Engineered Wood; size=Compact|Deluxe|Corner
item Art Easel: material=Pine Wood|Bamboo; size=Tabletop|Standing|Double-Sided
item Marble Run: material=ABS Plastic|Beech Wood; size=80-Piece|150-Piece|200-Piece
item Stacking Rainbow: material=Beech Wood|Food-Grade Silicone; size=6-Piece|
  8-Piece|12-Piece
item Balance Bike: material=Birch Wood|Lightweight Steel; size=10-Inch|12-Inch
item Dollhouse: material=Solid Wood|Engineered Wood; size=2-Story|3-Story
title: {brand} {size} {item} for {age} - {perk} {material} Toy, {color}
title: {brand} {item}, {size}, {perk} Toy for {age} - {kw}, {kw2}
title: {perk} {item} by {brand} - {size}, {color}, {kw} Gift for {age}
title: {brand} {color} {item} ({size}) - {kw} & {kw2} for {age}
title: {brand} {perk} {material} {item} for {age}, {size}, {kw}
open: Spark hours of {perk.low} play with the {brand} {size.low} {item.low},
  designed for {age.low}.
open: The {brand} {item} turns {use3} into an adventure with bright {color.low}
  tones and sturdy {material.low} construction.
open: Made from {material.low}, this {perk.low} {item.low} is built to survive years
  of enthusiastic play.
open: Looking for a screen-free gift for {age.low}? The {brand} {size} {item} checks
  every box.
body: Kids will love {feature}, and parents will appreciate {feature2}. ||
  Highlights include {feature} and {feature2}.
body: It's ideal for {use} and {use2}.
body: Playing together builds fine motor skills, problem solving and imagination.
body: Every piece is made from {material.low} and finished in cheerful {color.low}
  tones.
body: Cleanup is simple - just wipe with a damp cloth and store everything in the
  box.
body: Recommended for {age.low}; adult supervision is advised for younger children.
body: Key features: {kw}, {kw2}.
close: A gift they'll remember long after the wrapping paper is gone.
close: Order yours today and watch their creativity grow.
close: Makes a perfect birthday or holiday gift.
close: Satisfaction guaranteed or your money back.
""",
    "electronics": """\
brand: Voltique|Cableway|NexCharge|Lumora|Pixelport|Tronix Labs|Quillbyte|Arcwave|
  Syncro|Helio Gear|Ampliq|Orbitek
color: Black|Space Grey|Silver|White|Midnight Blue|Rose Gold|Forest Green|Graphite|
  Sand|Lavender
perk: Slim|Durable|Travel-Friendly|Premium|Heavy-Duty|Compact|Lightweight|Upgraded|
  Minimalist
kw: Drop-Tested|2-Year Warranty|Travel Pouch Included|Fingerprint-Resistant|
  Scratch-Resistant|Premium Build|Universal Fit|Eco-Friendly Packaging|Slim Design|
  Gift Ready|Lightweight Design|Safety Certified
feature: a slim profile that slips easily into a bag|
  premium materials that hold up to daily use|
  an 18-month warranty and friendly support|
  a minimalist look that matches any desk setup|certified safety testing|
  a soft-touch finish that resists fingerprints|
  a lightweight build that's easy to carry|
  broad compatibility with the devices you already own|
  precision engineering and strict quality control
use: the office|long flights|your nightstand|coffee-shop work sessions|road trips|
  the classroom|gaming marathons|working from home|business travel|dorm rooms
item USB-C Charging Cable: material=Braided Nylon|Silicone|Kevlar-Reinforced Nylon;
  size=3 ft|6 ft|10 ft
item Wireless Charging Pad: material=Aluminum|Silicone|Fabric-Wrapped; size=10W|15W
item Phone Case: material=Shockproof TPU|Liquid Silicone|Vegan Leather|
  Clear Polycarbonate; size=iPhone 15|iPhone 15 Pro Max|Galaxy S24|Pixel 8
item Laptop Sleeve: material=Water-Resistant Neoprene|Wool Felt|Vegan Leather;
  size=13-Inch|14-Inch|15.6-Inch|16-Inch
item Wall Charger: material=Fire-Resistant Polycarbonate; size=20W|35W|65W|100W
item Power Bank: material=Aluminum Alloy|Matte ABS; size=10000mAh|20000mAh|26800mAh
item HDMI Cable: material=Braided Nylon|PVC; size=3 ft|6 ft|15 ft
item Screen Protector: material=Tempered Glass|Anti-Glare Matte Film;
  size=iPhone 15|Galaxy S24|iPad Air|Pixel 8
item Laptop Stand: material=Aluminum|Bamboo; size=Adjustable|Foldable|Ventilated
item Mouse Pad: material=Microfiber|Natural Cork|Vegan Leather; size=Standard|XL|
  XXL Extended
item Cable Organizer Kit: material=Silicone|Hook-and-Loop Nylon; size=5-Piece|
  10-Piece
item Monitor Light Bar: material=Aluminum Alloy; size=16-Inch|20-Inch
title: {brand} {size} {item}, {perk} {material}, {color} - {kw}
title: {brand} {item} ({size}) - {perk} {material} Design, {kw}, {color}
title: {size} {item} by {brand} - {kw}, {kw2}, {material}, {color}
title: {brand} {perk} {size} {item} in {color} - {kw}, {kw2}
title: {brand} {size} {item} [{material}] {kw} | {kw2} - {color}
open: Keep your setup running smoothly with the {brand} {size} {item}, built from
  {material.low} in {color.low}.
open: The {brand} {item} combines {perk.low} {material.low} construction with a
  sleek {color.low} finish.
open: Designed for {use3}, this {size.low} {item.low} from {brand} is as practical
  as it is good-looking.
open: Upgrade your everyday carry with the {perk.low} {brand} {item}, now in
  {color.low}.
body: It features {feature} and {feature2}. || We designed it with {feature} and
  {feature2} because the little things matter.
body: The {material.low} exterior stands up to bumps, scratches and daily wear.
body: It's just as handy for {use} as it is for {use2}.
body: Setup takes seconds - no tools or apps required.
body: Every unit is tested for safety and reliability before it ships.
body: The {color.low} colorway pairs nicely with most laptops, phones and tablets.
body: Key features: {kw}, {kw2}.
close: Backed by {brand.poss} hassle-free replacement promise.
close: Order now and keep your devices ready for anything.
close: What's in the box: the {item.low}, a quick-start guide and our thanks.
close: Join thousands of happy customers who made the switch.
""",
    "fiction": """\
first: Amelia|James|Nora|Daniel|Priya|Marcus|Hannah|Owen|Sofia|Elliot|Grace|Rafael|
  Leah|Simon
last: Whitlock|Okafor|Brennan|Castillo|Lindqvist|Harrow|Mercer|Sato|Delacroix|Ashby|
  Kowalski|Greer|Abernathy|Vance
adj: Silent|Last|Hidden|Burning|Forgotten|Crimson|Winter|Broken|Golden|Midnight|
  Lost|Distant|Quiet|Salt|Iron|Paper|Glass|Wild|Hollow|Secret|Sunken|Scarlet|
  Painted|Borrowed|Drowned|Silver|Stolen|Unwritten|Shattered|Whispering|Fallen|
  Black|Summer|Frozen|Ember|Velvet|Bitter|Starlit|Ashen|Pale
noun: Harbor|Orchard|Lighthouse|Garden|Kingdom|Letters|Daughter|Crown|River|Witness|
  Promise|Ashes|Map|Tide|Station|Archive|Bridge|Sisters|Inheritance|Key|Hour|House|
  Queen|Forest|Island|Diary|Widow|Clockmaker|Shore|Mirror|Library|Season|Compass|
  Vow|Ballroom|Cartographer|Storm|Manor|Orphan|Feather
place: Blackwater|Ravenmoor|the North Sea Coast|Savannah|Larkspur Hill|Eldoria|
  Copper Creek|Vienna|the Outer Isles|Marrow Bay|Halcyon Falls|Cape Tamsin|
  Port Avalon|the Scottish Highlands|Willow Bend|Lake Orinda|Thornfield|San Marisol|
  Ashgrove|the Amber Coast
name: Eleanor|Juniper|Theo|Maren|Lucien|Clara|Silas|Hattie|Ivy|August|Rosalind|Wren|
  Cassius|Delphine|Jonah|Mira|Tobias|Odette|Felix|Beatrix
series: Ravenmoor Saga|Copper Creek Mysteries|Tidewater Trilogy|Shadow Court|
  Lantern Keepers|Harbor Lights|Starfall Cycle|Glass Throne|Marrow Bay Mysteries|
  Winter Court Chronicles|Blackwater Files|Halcyon Quartet
num: 1|2|3|4|5|6|7|8
theme: slow-burn romance|family secrets|atmospheric suspense|found family|
  unreliable narrators|sweeping historical drama|locked-room puzzles|court intrigue|
  small-town charm|second chances|enemies to lovers|dark academia
praise: impossible to put down|a stunning achievement|
  beautifully written and deeply moving|the perfect beach read|
  a twisty, heart-pounding ride|cozy, clever and utterly charming|
  haunting and unforgettable|a masterclass in suspense
item Thriller: sub=A Thriller|A Novel|A Novel of Suspense
item Mystery: sub=A Mystery|A Novel|A Whodunit
item Fantasy Novel: sub=A Fantasy|A Novel|A Tale of Magic
item Love Story: sub=A Love Story|A Novel|A Romance
item Historical Novel: sub=A Novel|A Novel of the Great War|A Saga
item Gothic Tale: sub=A Gothic Novel|A Ghost Story|A Novel
item Family Saga: sub=A Novel|A Family Saga|A Novel in Three Parts
item Novel of Suspense: sub=A Novel|A Novel of Suspense|A Thriller
title: The {adj} {noun} of {place}: {sub}
title: {name} and the {adj} {noun} ({series}, Book {num})
title: {name} and the {adj} {noun}: {sub}
title: The {adj} {noun} of {place} ({series}, Book {num})
title: The {adj} {noun}: {sub} ({series}, Book {num})
open: In {first} {last}'s gripping new {item.low}, {name} returns to {place} to
  uncover the truth about the {adj.low} {noun.low}.
open: When {name} inherits a crumbling house in {place}, the last thing anyone
  expects is a secret that could change everything.
open: {first} {last} delivers an unforgettable {item.low} set in {place}, where
  nothing is quite what it seems.
open: Nothing in {place} has been the same since the night of the {adj.low}
  {noun.low} - and {name} is the only one who remembers why.
body: As secrets surface and old alliances crumble, {name} must decide how much the
  truth is worth.
body: Perfect for fans of {theme} and {theme2}, this {item.low} will keep you
  turning pages long past midnight.
body: Told in alternating timelines, it's a story about {theme3} and the courage to
  start again.
body: Readers call it {praise}.
body: Book {num} in the {series} series can also be read as a standalone.
body: With razor-sharp prose and characters you won't forget, {first} {last} proves
  once again why readers can't get enough.
body: Atmospheric and deeply human, it asks what we owe the people we love.
close: Don't miss the next book in the series.
close: Includes a reading group guide and an exclusive author Q&A.
close: Now a national bestseller.
close: Available in hardcover, paperback, ebook and audio.
""",
    "nonfiction": """\
first: Amelia|James|Nora|Daniel|Priya|Marcus|Hannah|Owen|Sofia|Elliot|Grace|Rafael|
  Leah|Simon
last: Whitlock|Okafor|Brennan|Castillo|Lindqvist|Harrow|Mercer|Sato|Delacroix|Ashby|
  Kowalski|Greer|Abernathy|Vance
adj: Complete|Essential|Practical|Everyday|Modern|No-Fuss|Ultimate|Beginner's|
  Busy Person's|Illustrated|Weekend|Simple
n: 25|40|50|52|60|75|100|101|125|150|200|365
aud: Beginners|Busy People|Families|Adults|Teens and Adults|Seniors|
  Complete Beginners|Curious Minds|Weekend Hobbyists|Everyone|Students|
  Working Parents
edition: Revised Edition|2nd Edition|3rd Edition|2024 Edition|Expanded Edition|
  Illustrated Edition
years: 10|12|15|20|25
feature: clear step-by-step instructions|full-color photographs|
  printable checklists and worksheets|real-world case studies|
  common mistakes and how to avoid them|quick-reference charts|a 30-day action plan|
  expert tips from years of hands-on experience|a glossary of key terms|
  troubleshooting advice for when things go wrong
item Sourdough Baking: book=Cookbook|Handbook|Guide; things=Recipes|
  Step-by-Step Loaves|Bakery Secrets; goal=Crusty Loaves, Bagels and Pizza at Home|
  Mastering Starters and Long Fermentation|Bakery-Quality Bread From Your Home Oven
item Houseplant Care: book=Handbook|Guide|Field Guide; things=Plant Profiles|
  Care Tips|Easy-Care Plants; goal=Growing a Thriving Indoor Jungle|
  Keeping Your Plants Alive and Happy|Light, Water and Soil Made Easy
item Personal Finance: book=Guide|Workbook|Handbook; things=Money Lessons|
  Practical Strategies|Budget Worksheets;
  goal=Budgeting, Saving and Investing With Confidence|Getting Out of Debt for Good|
  Building Wealth on Any Income
item Watercolor Painting: book=Workbook|Guide|Sketchbook Course;
  things=Step-by-Step Projects|Painting Exercises|Color Recipes;
  goal=Loose Florals and Landscapes|Mastering Washes, Layers and Light|
  Finding Your Style With Paint
item Mediterranean Cooking: book=Cookbook|Kitchen Guide; things=Recipes|
  Weeknight Meals|Heart-Healthy Dishes; goal=Fresh, Simple Meals for Every Day|
  Eating Well Without Giving Up Flavor|Olive Oil, Vegetables and Vibrant Flavors
item Woodworking: book=Handbook|Project Book|Guide; things=Projects|
  Joinery Techniques|Shop Tips; goal=Building Furniture With Hand and Power Tools|
  Setting Up a Small Shop|From First Cut to Finished Piece
item Mindfulness: book=Workbook|Journal|Guide; things=Daily Practices|
  Guided Exercises|Reflections; goal=Calming Anxiety and Finding Focus|
  Living With Less Stress|Building a Daily Meditation Habit
item Python Programming: book=Crash Course|Handbook|Workbook;
  things=Hands-On Projects|Coding Exercises|Practical Examples;
  goal=Automating Boring Tasks|From Zero to Your First App|
  Data Analysis and Scripting Made Easy
item Marathon Training: book=Guide|Training Log|Handbook; things=Training Plans|
  Workouts|Race-Day Tips; goal=Running Your First 26.2 Miles|
  Injury-Free Training for Every Runner|Going From 5K to Finish Line
item Container Gardening: book=Guide|Handbook|Planner; things=Planting Plans|
  Easy Vegetables|Garden Projects; goal=Growing Food on Patios and Balconies|
  Big Harvests From Small Spaces|Herbs, Veggies and Flowers in Pots
item Small Business Marketing: book=Playbook|Guide|Workbook;
  things=Proven Strategies|Marketing Tactics|Case Studies;
  goal=Finding and Keeping Loyal Customers|Growing Your Brand on a Budget|
  Social Media, Email and Local Search
item Beekeeping: book=Handbook|Guide|Field Guide; things=Seasonal Tasks|
  Hive Checklists|Expert Tips; goal=Keeping Healthy Hives in Your Backyard|
  Harvesting Honey and Wax|Your First Year With Bees
item Birdwatching: book=Field Guide|Handbook|Journal; things=Species Profiles|
  Birding Hotspots|Identification Tips; goal=Identifying Birds by Sight and Sound|
  Attracting Birds to Your Yard|Birding Near Home and Far Away
item Parenting: book=Handbook|Guide|Workbook; things=Practical Tips|
  Conversation Starters|Calm Strategies; goal=Raising Resilient, Confident Kids|
  Surviving the Toddler Years|Connecting With Your Teen
title: The {adj} {item} {book}: {n} {things} for {aud} ({edition})
title: The {adj} {item} {book} for {aud}: {goal}, With {n} {things}
title: {item} {book} for {aud}: {goal} - {n} {things} ({edition})
title: The {adj} {item} {book}: {goal}, With {n} {things} ({edition})
open: In this practical guide, {first} {last} walks you through {goal.low} step by
  step.
open: Whether you're brand new to {item.low} or looking to sharpen your skills, this
  {book.low} has you covered.
open: {first} {last} distills years of hands-on experience into an approachable
  {book.low} on {item.low}.
open: Packed with {n} {things.low}, this {adj.low} {book.low} makes {item.low}
  accessible to everyone.
body: Inside, you'll find {feature} and {feature2}.
body: Written in a warm, encouraging voice, it's perfect for {aud.low}.
body: {first} {last} has spent more than {years} years teaching {item.low} to
  students of every level.
body: Each chapter builds on the last, so you'll gain confidence as you go.
body: It covers {goal.low} without the jargon or guesswork.
body: The {edition.low} adds new material based on reader feedback.
body: Keep it on your shelf as a trusted reference you'll return to again and again.
close: Start your journey today.
close: Makes a great gift for the lifelong learner in your life.
close: Scroll up and grab your copy now.
close: Available in paperback, hardcover and ebook editions.
""",
    "sports": """\
brand: Trailcrest|Summit Forge|Ridgeline Outfitters|Basecamp Co.|Alder & Ash|
  Peakform|Wildpath|Timberline Gear|Current Sports|Horizon Athletics|Northfork|
  Iron Mesa
color: Black|Ocean Blue|Sage|Coral|Slate|Sunset Orange|Olive|Lavender|Charcoal|
  Glacier White|Teal
perk: Lightweight|Durable|Portable|Heavy-Duty|Weather-Resistant|Packable|Pro-Grade|
  All-Season|Trail-Tested
kw: Non-Slip|Carrying Strap Included|Lifetime Warranty|Sweat-Resistant|BPA-Free|
  Quick-Dry|Compact Storage|Easy Setup|Reflective Accents|Eco-Friendly|
  Ergonomic Grip|Gift Ready
who: outdoor lovers of every level|weekend warriors|families who love the outdoors|
  thru-hikers and day-trippers alike
feature: a design that packs down small|
  materials that shrug off sweat, rain and dirt|
  a grippy texture that keeps things stable|an ergonomic shape that reduces strain|
  a free carrying bag|a one-year replacement guarantee|
  reinforced stitching at every stress point|
  a low-odor construction with no chemical smell|
  tough hardware rated for years of use
use: weekend hikes|backcountry camping|trail runs|beach days|tailgates|
  festival weekends|family campouts|national park road trips|overnight treks|
  fishing trips
@gym_use: morning workouts|home gym sessions|hot yoga|HIIT classes|recovery days|
  travel workouts|lunch-break stretches|studio classes|garage gym sessions|
  marathon training
@gym_who: beginners and seasoned athletes alike|busy parents squeezing in a workout|
  home gym enthusiasts|weekend warriors
@gym_perk: Non-Slip|Heavy-Duty|Durable|Pro-Grade|Compact|Space-Saving|Sweat-Proof|
  Portable
@gym_kw: Non-Slip|Sweat-Resistant|Space Saving|Quick Adjust|Ergonomic Grip|
  Home Gym Essential|Lifetime Warranty|Eco-Friendly|Easy Storage|Gift Ready|
  Low Odor|Travel Friendly
@court_use: league nights|backyard games|weekend tournaments|doubles with friends|
  beginner clinics|community center play|driveway rallies|club practice
item Yoga Mat: material=TPE|Natural Rubber|Cork|PVC-Free Foam; size=4mm|6mm|8mm;
  use=@gym_use; who=@gym_who; perk=@gym_perk; kw=@gym_kw
item Camping Hammock: material=Ripstop Nylon|Parachute Nylon; size=1-Person|2-Person
item Insulated Water Bottle: material=18/8 Stainless Steel|
  Double-Wall Stainless Steel; size=20 oz|32 oz|40 oz
item Hiking Backpack: material=Ripstop Nylon|Waterproof Polyester|Recycled Nylon;
  size=20L|35L|50L
item Adjustable Dumbbell: material=Cast Iron|Steel and Rubber; size=25 lb|52.5 lb|
  90 lb; use=@gym_use; who=@gym_who; perk=@gym_perk; kw=@gym_kw
item Resistance Band Set: material=Natural Latex|Fabric; size=5-Piece|11-Piece;
  use=@gym_use; who=@gym_who; perk=@gym_perk; kw=@gym_kw
item Sleeping Bag: material=Ripstop Polyester|Down-Filled Nylon; size=20°F|30°F|40°F
item Trekking Pole Set: material=Carbon Fiber|Aluminum; size=Collapsible|Adjustable|
  Quick-Lock
item Jump Rope: material=Steel Cable|PVC|Beaded; size=9 ft|10 ft; use=@gym_use;
  who=@gym_who; perk=@gym_perk; kw=@gym_kw
item Camping Lantern: material=Aluminum|Impact-Resistant ABS; size=500-Lumen|
  1000-Lumen
item Foam Roller: material=High-Density EVA Foam|EPP Foam; size=13-Inch|18-Inch|
  24-Inch; use=@gym_use; who=@gym_who; perk=@gym_perk; kw=@gym_kw
item Pickleball Paddle Set: material=Carbon Fiber|Fiberglass; size=2-Paddle|4-Paddle;
  use=@court_use; who=@gym_who;
  kw=@gym_kw
item Cooler Backpack: material=TPU-Coated Nylon|Waterproof Polyester; size=24-Can|
  30-Can
title: {brand} {size} {item} - {perk} {material}, {kw}, {kw2}, {color}
title: {brand} {perk} {item}, {size}, {color} - {kw}, {kw2}
title: {item} by {brand} - {size} {material}, {kw} & {kw2}, {color}
title: {brand} {size} {material} {item} ({color}) | {kw} | {kw2}
title: {brand} {color} {item}, {perk} {material}, {size} - {kw}
open: Take your {use3} to the next level with the {brand} {size.low} {item.low},
  built from {perk.low} {material.low}.
open: The {brand} {item} is made from {material.low} and designed for {who}.
open: Built for {use3}, this {color.low} {item.low} from {brand} goes wherever you
  do.
open: Whether you're just starting out or training for something big, the {perk.low}
  {brand} {item} has your back.
body: It features {feature} and {feature2}.
body: The {color.low} colorway looks sharp at the gym, on the trail or around the
  campsite.
body: Key features: {kw}, {kw2}.
body: Our gear is tested by real athletes in real conditions - not just in a lab.
body: Wipe clean after use and store somewhere dry to keep it in top shape for
  years.
body: It's a favorite of {who} for good reason.
body: From {use} to {use2}, it's ready when you are.
close: Backed by {brand.poss} lifetime warranty.
close: Get outside and make every adventure count.
close: Order yours today - your next adventure is waiting.
close: A great gift for the active people in your life.
""",
    "beauty": """\
brand: Lumière Botanics|Dewdrop Labs|Verdana Skin|Petal & Pestle|Glowhaus|
  Saltwater Apothecary|Maison Belle|Pure Origin|Rosewood Naturals|Aurelle|Clearwell|
  Juniper Bloom
scent: Unscented=no added fragrance|Lavender=a calming lavender scent|
  Coconut Vanilla=a warm coconut vanilla scent|Citrus Bloom=a bright citrus scent|
  Eucalyptus Mint=a refreshing eucalyptus mint scent|Rose=a delicate rose scent|
  Sandalwood=a soft sandalwood scent|Cucumber=a crisp cucumber scent|
  White Tea=a clean white tea scent
target: Dry Skin|Oily Skin|Sensitive Skin|All Skin Types|Combination Skin|
  Mature Skin|Acne-Prone Skin
perk: Vegan|Cruelty-Free|Paraben-Free|Dermatologist-Tested|Clean|Lightweight|
  Non-Greasy|Hydrating|Fast-Absorbing
kw: Natural Ingredients|Made in USA|Vegan Formula|Dermatologist Approved|
  Clinically Tested|For Men and Women|Salon Quality|Travel Friendly|Gluten-Free|
  Non-Toxic|Sulfate-Free|Recyclable Packaging
feature: a lightweight texture that absorbs quickly|
  no parabens, sulfates or synthetic dyes|recyclable, minimal packaging|
  a formula that's never tested on animals|
  visible results in as little as two weeks|a gentle pH-balanced base|
  antioxidants that help protect against daily stressors|
  a non-greasy finish that layers well under makeup|
  clean ingredients you can actually pronounce
item Face Serum: ingredient=Vitamin C=vitamin C|Hyaluronic Acid|Niacinamide|Retinol|
  Peptide; size=1 fl oz|1.7 fl oz
item Night Cream: ingredient=Retinol|Peptide|Ceramide|Shea Butter|Bakuchiol;
  size=1.7 oz|2 oz
item Shampoo: ingredient=Argan Oil|Tea Tree|Biotin|Rosemary Mint|Coconut Milk;
  size=12 fl oz|16 fl oz|33.8 fl oz; target=Dry, Damaged Hair|Curly Hair|Fine Hair|
  All Hair Types|Color-Treated Hair|Thinning Hair
item Conditioner: ingredient=Argan Oil|Shea Butter|Biotin|Coconut Milk;
  size=12 fl oz|16 fl oz|33.8 fl oz; target=Dry, Damaged Hair|Curly Hair|Fine Hair|
  All Hair Types|Color-Treated Hair
item Body Lotion: ingredient=Shea Butter|Cocoa Butter|Colloidal Oat|Aloe Vera;
  size=8 oz|16 oz
item Lip Balm Set: ingredient=Beeswax|Coconut Oil|Shea Butter; size=4-Pack|6-Pack;
  target=Dry, Chapped Lips|Sensitive Lips|Everyday Use
item Eye Cream: ingredient=Caffeine|Peptide|Vitamin K=vitamin K|Retinol;
  size=0.5 oz|1 oz
item Facial Cleanser: ingredient=Salicylic Acid|Green Tea|Rose Water|
  Activated Charcoal|Ceramide; size=5 fl oz|8 fl oz
item Hair Oil: ingredient=Argan|Jojoba|Rosemary|Castor; size=2 fl oz|4 fl oz;
  target=Dry, Damaged Hair|Curly Hair|All Hair Types|Thinning Hair
item Mineral Sunscreen: ingredient=Zinc Oxide SPF 30|Zinc Oxide SPF 50|
  Titanium Dioxide SPF 30; size=3 fl oz|5 fl oz
item Body Scrub: ingredient=Coffee|Sea Salt|Brown Sugar|Himalayan Pink Salt;
  size=8 oz|12 oz
item Sheet Mask Set: ingredient=Hyaluronic Acid|Collagen|Centella|Snail Mucin;
  size=5-Pack|10-Pack
title: {brand} {ingredient} {item} for {target} - {perk}, {scent}, {size}, {kw}
title: {brand} {perk} {item} with {ingredient}, {scent}, {size} - {kw}, {kw2}
title: {ingredient} {item} by {brand} | {kw} | {kw2} | {scent} | {size}
title: {brand} {item} - {ingredient}, {scent} - {kw} for {target} ({size})
title: {brand} {size} {item} for {target}, {perk} {ingredient} Formula, {kw}
open: Treat yourself to the {brand} {item}, a {perk.low} formula powered by
  {ingredient.low}.
open: Formulated for {target.low}, this {ingredient.low} {item.low} helps you look
  and feel your best every day.
open: The {brand} {size} {item} blends {ingredient.low} into a {perk.low} formula
  with {scent.low}.
open: Meet your new daily essential: the {perk.low} {brand} {item} with
  {ingredient.low}, made for {target.low}.
body: It features {feature} and {feature2}. || {ingredient} helps visibly improve
  texture, and the formula offers {feature}.
body: Key features: {kw}, {kw2}.
body: Use daily or as directed for best results.
body: Its travel-friendly packaging slips easily into a gym bag or carry-on.
body: Suitable for {target.low} and gentle enough for daily use.
body: Every batch is made in small runs and tested by independent dermatologists.
body: Finished with {scent.low}, it turns your routine into a small daily ritual.
close: Your routine will thank you.
close: Add it to your cart and glow with confidence.
close: Backed by {brand.poss} 30-day happiness guarantee.
close: A thoughtful gift for anyone who loves self-care.
""",
    "home_decor": """\
brand: Willow & Wren|Casa Lume|Hearth Row|Driftwood Studio|Nestwell|Lark Lane|
  Atelier Nord|Olive & Oak|Stillwater Home|Marlowe House|Fable Loom|
  Terra Nova Living
color: Ivory|Terracotta|Sage Green|Charcoal|Blush Pink|Mustard Yellow|Navy|Oatmeal|
  Emerald|Matte Black|Natural|Antique Brass
style: Boho|Modern Farmhouse|Mid-Century Modern|Coastal|Minimalist|Scandinavian|
  Rustic|Art Deco=Art Deco|Japandi|Cottagecore
room: Living Room|Bedroom|Entryway|Home Office|Nursery|Dining Room|Reading Nook|
  Guest Room|Kitchen|Apartment
perk: Handcrafted|Modern|Elegant|Cozy|Decorative|Oversized|Textured|Vintage-Inspired
kw: Handmade|Easy to Hang|Washable|Hidden Zipper|Gift Ready|Fade-Resistant|
  Eco-Friendly|Artisan Crafted|Ready to Display|No Assembly|Hardware Included|
  Neutral Decor
feature: a design that's easy to style with what you already own|
  rich texture that adds depth to any room|
  sturdy construction built to last for years|
  a finish that resists fading in sunlight|
  eco-conscious materials sourced responsibly|all the hardware you need in the box|
  a versatile size that works in most spaces|
  careful packaging so it arrives ready to display
item Throw Pillow Cover: material=Linen|Velvet|Cotton Canvas|Chunky Knit|Boucle;
  size=18x18 Inch|20x20 Inch|12x20 Inch
item Throw Blanket: material=Chunky Knit|Faux Fur|Cotton Waffle|Sherpa Fleece|
  Boucle; size=50x60 Inch|60x80 Inch
item Table Lamp: material=Ceramic|Brass|Rattan|Travertine; size=18-Inch|24-Inch|
  28-Inch
item Wall Mirror: material=Metal Frame|Rattan|Solid Wood|Beveled Glass;
  size=24-Inch Round|30-Inch Round|24x36 Inch
item Scented Candle: material=Soy Wax|Coconut Wax|Beeswax Blend; size=8 oz|12 oz|
  14 oz
item Area Rug: material=Jute|Hand-Tufted Wool|Polypropylene|Cotton Flatweave;
  size=4x6 ft|5x7 ft|8x10 ft
item Vase: material=Ceramic|Glass|Terracotta|Stoneware; size=8-Inch|12-Inch|16-Inch
item Floating Shelf Set: material=Solid Pine|Acacia Wood|Powder-Coated Metal;
  size=2-Piece|3-Piece
item Picture Frame Set: material=Solid Wood|Aluminum; size=7-Piece|10-Piece|12-Piece
item Blackout Curtain Panel: material=Thermal Polyester|Linen Blend|Velvet;
  size=52x63 Inch|52x84 Inch|52x96 Inch
item Decorative Tray: material=Marble|Mango Wood|Rattan|Enamel; size=12-Inch|
  16-Inch|20-Inch
item Wall Clock: material=Metal|Solid Wood|Rattan; size=12-Inch|16-Inch|24-Inch
title: {brand} {style} {item}, {material}, {color}, {size} - {kw}
title: {brand} {perk} {material} {item} - {style} Decor for {room}, {color}
title: {style} {item} by {brand} - {size} {material}, {kw}, {color}
title: {brand} {size} {item} in {color} {material} | {kw} | {kw2}
title: {brand} {perk} {item}, {size} - {kw}, {kw2} - {style} Home Decor
open: Add {style.low} warmth to your {room.low} with the {brand} {item.low} in
  {color.low} {material.low}.
open: The {brand} {item} brings a touch of {style.low} style and {color.low} color
  to any {room.low}.
open: Crafted from {material.low} in {color.low}, this {size.low} {item.low} pulls
  any room together.
open: Designed with {style.low} homes in mind, the {brand} {item} is an easy way to
  refresh your {room.low}.
body: It features {feature} and {feature2}.
body: Style it in the {room.low} or the {room2.low} - it works beautifully in both.
body: The {color.low} tone pairs effortlessly with neutral palettes and bold accents
  alike.
body: Key features: {kw}, {kw2}.
body: Each piece is finished by hand, so slight variations make yours one of a kind.
body: Dust with a soft, dry cloth to keep it looking its best.
body: It makes a thoughtful housewarming gift for the {style.low} lover in your
  life.
close: Bring home a little more comfort today.
close: Love it or return it within 60 days.
close: Designed in-house by {brand.poss} small team of makers.
close: Pair it with the rest of the collection for a cohesive look.
""",
    "pet_supplies": """\
brand: Pawsome Co.|Tailwind Pet|Barkley & Bean|Whisker Works|Good Boy Goods|Furrest|
  Happy Hound|Purrfect Nest|Fetch & Co.|Paw Harbor|Cozy Critter|Snout & Tail
pet: Dogs and Cats|Small Dogs and Cats|Cats and Small Dogs|Pets
color: Grey|Brown|Navy|Tan|Charcoal|Sage Green|Blush Pink|Cream|Teal|Camo
perk: Durable|Washable|Non-Slip|Chew-Resistant|Vet-Recommended|Calming|Lightweight|
  Eco-Friendly
kw: Easy to Clean|Vet Approved|Pet Safe|Durable Design|Gift for Pet Lovers|
  Indoor and Outdoor|Travel Friendly|Eco-Friendly|All Breeds|Premium Quality|
  Satisfaction Guaranteed|Veterinarian Designed
feature: pet-safe, non-toxic materials|a design approved by our in-house vet team|
  an easy-clean surface that resists hair and odors|
  sturdy construction that stands up to daily use|
  a lightweight build that's easy to take anywhere|a 90-day satisfaction guarantee|
  a thoughtful design tested by real pets and their people|
  colors that won't fade or flake
use: naps in the sun|road trips|vet visits|busy weekdays|rainy days indoors|
  playtime|travel|quiet evenings at home|moving day|holiday visits
@dog_use: long walks|road trips|crate training|park visits|busy weekdays|
  rainy days indoors|playtime|weekend hikes|vet visits|quiet evenings at home
@cat_use: rainy days indoors|playtime|quiet evenings at home|naps in the sun|
  busy weekdays|vet visits|solo play while you're at work|new-kitten training
@dog: Dogs|Puppies|Small Dogs|Medium Dogs|Large Dogs|Senior Dogs
@cat: Cats|Kittens|Indoor Cats|Senior Cats
item Orthopedic Dog Bed: material=Memory Foam|Egg-Crate Foam|Cooling Gel Foam;
  size=Medium|Large|X-Large|Jumbo; pet=Dogs|Large Dogs|Senior Dogs|Medium Dogs;
  use=@dog_use
item Cat Tree: material=Sisal and Plush|Natural Wood|Cardboard and Sisal;
  size=36-Inch|48-Inch|62-Inch; pet=@cat; use=@cat_use
item Dog Harness: material=Breathable Mesh|Padded Nylon|Reflective Oxford;
  size=Small|Medium|Large; pet=@dog; use=@dog_use
item Slow Feeder Bowl: material=Food-Grade Silicone|Stainless Steel|Melamine;
  size=2-Cup|4-Cup
item Litter Mat: material=Honeycomb EVA|Soft PVC; size=24x17 Inch|35x23 Inch;
  pet=Cats|Kittens|Multi-Cat Homes; use=@cat_use
item Retractable Dog Leash: material=Nylon Tape|Reflective Cord; size=16 ft|26 ft;
  pet=@dog; use=@dog_use
item Interactive Cat Toy: material=ABS Plastic|Feather and Plush; size=3-Pack|
  Rechargeable; pet=@cat; use=@cat_use
item Chew Toy Set: material=Natural Rubber|Durable Nylon; size=4-Pack|6-Pack;
  pet=Dogs|Puppies|Aggressive Chewers; use=@dog_use
item Grooming Brush: material=Stainless Steel Pins|Boar Bristle|Silicone;
  size=Small|Large
item Calming Pet Bed: material=Faux Fur|Vegan Shag; size=23-Inch|30-Inch|36-Inch
item Pet Carrier: material=Airline-Approved Mesh|Ballistic Nylon; size=Small|Medium|
  Large
item Cat Scratching Post: material=Sisal Rope|Corrugated Cardboard; size=24-Inch|
  32-Inch; pet=@cat; use=@cat_use
title: {brand} {item} for {pet} - {perk}, {kw}, {color}, {size}
title: {brand} {perk} {material} {item}, {size}, {color} - {kw}, {kw2}
title: {item} by {brand} for {pet} | {size} | {color} | {kw} | {kw2}
title: {brand} {size} {item} - {material}, {kw} & {kw2} ({color})
title: {perk} {item} for {pet} by {brand}, {material}, {color} - {kw}
open: Give your best friend the comfort they deserve with the {brand} {item.low},
  made from {material.low}.
open: Designed for {pet.low}, the {brand} {size} {item} is made from {material.low}
  and built to last.
open: The {brand} {item} makes {use3} easier for {pet.low} and the people who love
  them.
open: Made from {material.low} in {color.low}, this {perk.low} {item.low} keeps
  {pet.low} happy, healthy and comfortable.
body: It features {feature} and {feature2}.
body: Key features: {kw}, {kw2}.
body: Pet parents love it for {use} and {use2}.
body: Please measure your pet before ordering to choose the right size.
body: We test every product with our own pets before it ever reaches yours.
body: The {color.low} color hides fur and everyday messes between cleanings.
body: Spot clean or hand wash as needed; air dry for best results.
close: Because they're family.
close: Happy pets, happy home - order yours today.
close: Backed by {brand.poss} 90-day satisfaction guarantee.
close: A perfect gift for the pet lover in your life.
""",
    "tools": """\
brand: Ironclad Works|Torqwell|Stonebridge Tools|Keystone Pro|Boltline|
  Forge & Anvil|Cobalt Ridge|Hammerstone|Trueline|Workwise|Gritstone|
  Tradesman Supply
color: Yellow and Black|Red|Orange|Blue|Black|Green|Grey and Black|Red and Black|
  Matte Black|Orange and Grey
perk: Heavy-Duty|Professional|Compact|Magnetic|Comfort-Grip|Rust-Resistant|
  Precision|Jobsite-Ready|Contractor-Grade
kw: Storage Case Included|Lifetime Warranty|Anti-Slip Grip|Professional Quality|
  Jobsite Tough|Impact-Resistant|Toolbox Essential|Rust-Proof Finish|Gift for Dad|
  DIY Essential|Contractor Approved|Built to Last
feature: a comfortable grip that reduces hand fatigue|
  precision machining for a tight, accurate fit|
  a corrosion-resistant finish that shrugs off moisture|
  a durable case that keeps everything organized|
  clearly stamped markings that won't wear off|balanced weight for better control|
  drop-tested construction for the jobsite|
  a lifetime warranty with no-hassle replacements
use: DIY home repairs|furniture assembly|automotive work|hanging shelves and art|
  framing projects|weekend woodworking|appliance installation|jobsite use|
  garage projects|plumbing fixes
item Cordless Drill: material=Brushless 20V=a brushless 20V motor|
  18V Lithium-Ion=an 18V lithium-ion battery system|12V Compact=a compact 12V motor;
  size=1/2-Inch Chuck|3/8-Inch Chuck
item Impact Driver: material=Brushless 20V=a brushless 20V motor|
  12V Compact=a compact 12V motor; size=1/4-Inch Hex|1/4-Inch Quick-Release
item Socket Set: material=Chrome Vanadium Steel|Cr-Mo Steel=chrome-molybdenum steel;
  size=40-Piece|108-Piece|232-Piece
item Screwdriver Set: material=S2 Steel=S2 tool steel|Chrome Vanadium Steel;
  size=12-Piece|32-Piece|64-Piece
item Tape Measure: material=Nylon-Coated Blade=a nylon-coated steel blade|
  Magnetic Hook=a magnetic hook and steel blade; size=16 ft|25 ft|35 ft
item Claw Hammer: material=Forged Steel|Fiberglass Handle=a fiberglass handle|
  Titanium; size=16 oz|20 oz|22 oz
item Utility Knife: material=Aluminum Alloy|Zinc Alloy; size=Retractable|Folding
item Tool Bag: material=1680D Ballistic Nylon|Heavy-Duty Canvas; size=16-Inch|
  20-Inch
item Laser Level: material=IP54-Rated Housing=an IP54-rated housing|
  Rubberized Housing=a rubberized housing; size=Cross-Line|360-Degree|3-Plane
item Adjustable Wrench Set: material=Chrome Vanadium Steel|Forged Alloy Steel;
  size=3-Piece|4-Piece
item Stud Finder: material=Impact-Resistant ABS; size=4-in-1|5-in-1
item Workbench: material=Steel Frame=a steel frame|Solid Hardwood; size=48-Inch|
  60-Inch
item Pliers Set: material=Chrome Vanadium Steel|High-Carbon Steel; size=3-Piece|
  5-Piece|7-Piece
title: {brand} {size} {item}, {perk}, {material} - {kw}, {color}
title: {brand} {material} {item}, {size}, {color} - {kw} | {kw2}
title: {perk} {size} {item} by {brand}, {color} - {kw} | {kw2}
title: {brand} {item} {size} {perk} - {kw}, {kw2}, {color}
title: {brand} {perk} {material} {item} ({size}, {color}) - {kw}
open: Tackle {use3} with confidence using the {brand} {size.low} {item.low}, built
  with {material.low}.
open: The {brand} {item} is a {perk.low} workhorse made with {material.low} for
  {use3}.
open: From {use} to {use2}, the {perk.low} {brand} {item} gets the job done right
  the first time.
open: Made with {material.low}, this {color.low} {item.low} from {brand} is built
  for pros and DIYers alike.
body: It features {feature} and {feature2}.
body: Key features: {kw}, {kw2}.
body: The high-visibility {color.low} finish makes it easy to spot in a crowded
  toolbox.
body: Every tool is inspected and tested before it leaves our facility.
body: It's a favorite among contractors, mechanics and weekend DIYers.
body: Store it in a dry place and wipe it down after use to keep it performing like
  new.
body: Tough enough for the jobsite, simple enough for first-time DIYers.
close: Backed by {brand.poss} lifetime warranty.
close: Makes a great gift for Father's Day, birthdays and holidays.
close: Order yours today and get the job done right.
close: Built tough - because the job won't wait.
""",
}

# Proper nouns that keep their capitals inside sentences.
KEEP_CASE = frozenset(
    [
        "French",
        "German",
        "Japanese",
        "Mediterranean",
        "Python",
        "Himalayan",
        "Scandinavian",
        "Japandi",
        "Montessori",
        "Supima",
        "Pima",
        "Kevlar",
        "Galaxy",
        "Pixel",
        "Air",
        "Pro",
        "Max",
    ]
)


class Term(str):
    """A vocabulary value: ``str(term)`` is the title form, ``term.low`` the
    in-sentence form and ``term.poss`` the possessive of the title form."""

    low: str
    poss: str


def _lower_part(part: str) -> str:
    # Single letters (T-Shirt, USB-C) and inner capitals (BPA, iPhone, 20V) are
    # acronyms or brand spellings; keep those as written.
    if len(part) == 1 or part in KEEP_CASE or not part[1:].islower():
        return part
    return part.lower()


def _lower_word(word: str) -> str:
    return "-".join(_lower_part(p) for p in word.split("-"))


def _term(spec: str) -> Term:
    title, _, low = spec.partition("=")
    term = Term(title)
    term.low = low or " ".join(_lower_word(w) for w in title.split(" "))
    plural = title.endswith("s") and not title.endswith(("ss", "us"))
    term.poss = title + ("'" if plural else "'s")
    return term


def _terms(values: str) -> tuple[Term, ...]:
    return tuple(_term(v.strip()) for v in values.split("|"))


def _spec_lines(text: str) -> Iterator[tuple[str, str]]:
    """Yield (key, value) pairs, joining continuation lines."""
    key, parts = None, []
    for line in text.splitlines():
        if line.startswith(" "):
            parts.append(line.strip())
            continue
        if key is not None:
            yield key, " ".join(parts)
        key, _, value = line.partition(": ")
        parts = [value]
    if key is not None:
        yield key, " ".join(parts)


def _overrides(value: str, named: dict[str, tuple[Term, ...]]) -> dict:
    pairs = (part.strip().partition("=") for part in value.split(";"))
    return {slot: named[values] if values.startswith("@") else _terms(values) for slot, _, values in pairs}


class Category:
    """Compiled vocabulary and templates of one product category."""

    def __init__(self, index: int, name: str, spec: str) -> None:
        self.name = name
        self.isbn = name in ISBN_CATEGORIES
        self.label_base = index * (N_LABELS // len(SPECS))
        templates: dict[str, list] = {"title": [], "open": [], "body": [], "close": []}
        slots: dict[str, tuple[Term, ...]] = {}
        named: dict[str, tuple[Term, ...]] = {}
        items: dict[str, str] = {}
        for key, value in _spec_lines(spec):
            if key in templates:
                templates[key].append(value)
            elif key.startswith("item "):
                items[key[5:]] = value
            elif key.startswith("@"):
                named[key] = _terms(value)
            else:
                slots[key] = _terms(value)
        self.titles = tuple(templates["title"])
        self.opens = tuple(templates["open"])
        self.bodies = tuple(tuple(b.split(" || ")) for b in templates["body"])
        self.closes = tuple(templates["close"])
        self.items = tuple(
            (_term(item), self._slot_table(slots, _overrides(value, named))) for item, value in items.items()
        )

    @staticmethod
    def _slot_table(shared: dict, overrides: dict) -> tuple:
        """(key, key2, key3, values, len, max step or 0 if not paired) per slot."""
        table = {**shared, **overrides}
        return tuple(
            (
                k,
                k + "2",
                k + "3",
                v,
                len(v),
                (len(v) - 1) // 2 if k in PAIRED_SLOTS else 0,
            )
            for k, v in table.items()
        )

    def draw(self, rand) -> dict:
        """Pick one value per slot, three distinct ones for PAIRED_SLOTS."""
        item, table = self.items[int(rand() * len(self.items))]
        attrs = {"item": item}
        for key, key2, key3, values, n, max_step in table:
            i = int(rand() * n)
            attrs[key] = values[i]
            if max_step:
                # i, i+step, i+2*step are distinct mod n while 2*step < n.
                step = 1 + int(rand() * max_step)
                attrs[key2] = values[(i + step) % n]
                attrs[key3] = values[(i + 2 * step) % n]
        return attrs

    def title(self, attrs: dict, rand) -> str:
        return self.titles[int(rand() * len(self.titles))].format_map(attrs)

    def describe(self, attrs: dict, rand) -> str:
        """Opening sentence, 1-3 distinct body sentences, sometimes a closer."""
        parts = [self.opens[int(rand() * len(self.opens))].format_map(attrs)]
        bodies = self.bodies
        n = len(bodies)
        i = int(rand() * n)
        step = 1 + int(rand() * ((n - 1) // 2))  # as in draw(): no repeats
        for _ in range(1 + int(rand() * 3)):
            wordings = bodies[i]
            parts.append(wordings[int(rand() * len(wordings))].format_map(attrs))
            i = (i + step) % n
        if rand() < 0.6:
            parts.append(self.closes[int(rand() * len(self.closes))].format_map(attrs))
        return " ".join(parts)

    def targets(self, rand) -> list[int]:
        """1-24 label ids (mostly few) from this category's block, ascending."""
        count = 1 + int(rand() * rand() * 24)
        # One id per equal slice of the block: sorted and distinct by construction.
        width = N_LABELS // len(SPECS) // count
        base = self.label_base
        return [base + j * width + int(rand() * width) for j in range(count)]


CATEGORIES = tuple(Category(i, name, spec) for i, (name, spec) in enumerate(SPECS.items()))

_B36 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ"
_B36_PAIRS = tuple(x + y for x in _B36 for y in _B36)
_ASIN_HALF = 36**4  # ASIN = "B0" + 8 base-36 digits = two halves of 4
_ISBN_HALF = 31_622  # _ISBN_HALF**2 < 10**9, the 9-digit ISBN body
MAX_ROWS = _ISBN_HALF**2


def _permute(i: int, keys: tuple[int, ...], half: int) -> int:
    """Map range(half**2) onto itself one-to-one (a small Feistel network).

    Row numbers become distinct ids that do not look sequential; an affine map
    would be one-to-one too, but leaves visible digit patterns across rows.
    """
    left, right = divmod(i, half)
    for key in keys:
        left, right = right, (left + ((right ^ key) * 2_654_435_761 >> 9)) % half
    return left * half + right


def _asin(i: int, keys: tuple[int, ...]) -> str:
    high, low = divmod(_permute(i, keys, _ASIN_HALF), _ASIN_HALF)
    a, b = divmod(high, 1296)
    c, d = divmod(low, 1296)
    return "B0" + _B36_PAIRS[a] + _B36_PAIRS[b] + _B36_PAIRS[c] + _B36_PAIRS[d]


def _isbn10(i: int, keys: tuple[int, ...]) -> str:
    body = f"{_permute(i, keys, _ISBN_HALF):09d}"
    total = sum((10 - pos) * int(d) for pos, d in enumerate(body))
    check = (11 - total % 11) % 11
    return body + ("X" if check == 10 else str(check))


# The same bytes as json.dumps(rec, ensure_ascii=False), without building a new
# encoder on every call.
_ENCODE = json.JSONEncoder(ensure_ascii=False).encode


# ---------------------------------------------------------------- quirks ----


class _QuirkContext:
    """State a quirk may use: its own random stream and earlier clean rows."""

    POOL_SIZE = 1024

    def __init__(self, seed: int) -> None:
        self.rand = random.Random(f"{seed}:quirks").random
        self.pool: list[tuple[dict, Category, dict]] = []
        self.attrs: dict = {}  # slot values of the current row

    def remember(self, n: int, rec: dict, cat: Category, attrs: dict) -> None:
        if len(self.pool) < self.POOL_SIZE:
            self.pool.append((rec, cat, attrs))
        else:
            self.pool[n % self.POOL_SIZE] = (rec, cat, attrs)

    def choice(self, seq: Sequence):
        return seq[int(self.rand() * len(seq))]

    def earlier(self) -> tuple[dict, Category, dict] | None:
        return self.choice(self.pool) if self.pool else None

    def spot(self, text: str) -> int:
        """A random word boundary in text (len(text) if there is none after it)."""
        pos = text.find(" ", int(self.rand() * len(text)))
        return len(text) if pos < 0 else pos


def _q_html_entities(rec: dict, q: _QuirkContext) -> dict:
    text = rec["content"]
    new = text.replace("&", "&amp;").replace("'", "&#8217;").replace(" - ", " &#8211; ")
    brand = q.attrs.get("brand")
    if brand and q.rand() < 0.5:
        new = new.replace(brand, f"&quot;{brand}&quot;", 1)
    if new == text:
        new = text.replace(" and ", " &amp; ", 1)
    if new == text:
        new = text + " &quot;Five stars&quot; &#8211; a verified buyer."
    return {**rec, "content": new}


def _q_empty_content(rec: dict, q: _QuirkContext) -> dict:
    return {**rec, "content": ""}


def _q_empty_title(rec: dict, q: _QuirkContext) -> dict:
    return {**rec, "title": ""}


def _q_blank_title(rec: dict, q: _QuirkContext) -> dict:
    return {**rec, "title": q.choice((" ", "   ", "\t", " \n "))}


def _q_duplicate_row(rec: dict, q: _QuirkContext) -> dict | None:
    earlier = q.earlier()
    return earlier[0] if earlier else None


def _q_duplicate_title(rec: dict, q: _QuirkContext) -> dict | None:
    earlier = q.earlier()
    if earlier is None:
        return None
    old, cat, attrs = earlier
    for _ in range(8):
        content = cat.describe(attrs, q.rand)
        if content != old["content"]:
            return {**rec, "title": old["title"], "content": content}
    return None


def _q_csv_doubled_quotes(rec: dict, q: _QuirkContext) -> str:
    return '"' + _ENCODE(rec).replace('"', '""') + '"'


def _q_stringified_targets(rec: dict, q: _QuirkContext) -> dict:
    return {
        **rec,
        "target_ind": str(rec["target_ind"]),
        "target_rel": str(rec["target_rel"]),
    }


def _q_control_chars(rec: dict, q: _QuirkContext) -> dict:
    field = q.choice(("title", "content"))
    text = rec[field]
    pos = q.spot(text)
    return {
        **rec,
        field: text[:pos] + q.choice("\x07\x0b\x0c\x1b\x08\x00") + text[pos:],
    }


def _q_stray_whitespace(rec: dict, q: _QuirkContext) -> dict:
    title = q.choice(("", " ", "  ", "\t")) + rec["title"] + q.choice((" ", "  ", "\n"))
    if q.rand() < 0.5:
        title = title.replace(" ", "   ", 1)
    gap = q.choice((".  ", ".\n", ".\n\n", ".   ", ". \n "))
    content = rec["content"].replace(". ", gap) + q.choice(("\n", " ", "  \n", ""))
    return {
        **rec,
        "title": title,
        "content": " " + content if q.rand() < 0.3 else content,
    }


def _q_truncated_json(rec: dict, q: _QuirkContext) -> str:
    line = _ENCODE(rec)
    return line[: int(len(line) * (0.2 + 0.75 * q.rand()))]


def _q_non_object(rec: dict, q: _QuirkContext) -> str:
    return q.choice(
        (
            _ENCODE(rec["target_ind"]),
            _ENCODE(rec["title"]),
            _ENCODE([rec["uid"], rec["title"]]),
            "null",
            "[]",
            "42",
        )
    )


def _q_null_field(rec: dict, q: _QuirkContext) -> dict:
    return {**rec, q.choice(("title", "content")): None}


def _q_wrong_field_name(rec: dict, q: _QuirkContext) -> dict:
    old, new = q.choice((("title", "Title"), ("title", "Title"), ("content", "Content")))
    return {(new if key == old else key): value for key, value in rec.items()}


def _q_invalid_utf8(rec: dict, q: _QuirkContext) -> bytes:
    line = _ENCODE(rec).encode("utf-8")
    start = line.index(b'"content": "') + len(b'"content": "')
    end = line.index(b'", "target_ind"', start)
    # Insert at a space so the byte never lands inside a UTF-8 sequence or escape.
    pos = line.find(b" ", start + int(q.rand() * (end - start)), end)
    pos = start if pos < 0 else pos
    return line[:pos] + q.choice((b"\xff", b"\xfe", b"\x80", b"\xc3\x28")) + line[pos:]


_QUIRKS = {
    "html_entities": _q_html_entities,
    "empty_content": _q_empty_content,
    "empty_title": _q_empty_title,
    "blank_title": _q_blank_title,
    "duplicate_row": _q_duplicate_row,
    "duplicate_title": _q_duplicate_title,
    "csv_doubled_quotes": _q_csv_doubled_quotes,
    "stringified_targets": _q_stringified_targets,
    "control_chars": _q_control_chars,
    "stray_whitespace": _q_stray_whitespace,
    "truncated_json": _q_truncated_json,
    "non_object": _q_non_object,
    "null_field": _q_null_field,
    "wrong_field_name": _q_wrong_field_name,
    "invalid_utf8": _q_invalid_utf8,
}


# ------------------------------------------------------------ generation ----


def _check_args(n_rows: int, quirk_rate: float, kinds: Sequence[str]) -> None:
    if not 0 <= n_rows <= MAX_ROWS:
        raise ValueError(f"n_rows must be in [0, {MAX_ROWS}], got {n_rows}")
    if not 0.0 <= quirk_rate <= 1.0:
        raise ValueError(f"quirk_rate must be in [0, 1], got {quirk_rate}")
    unknown = [k for k in kinds if k not in _QUIRKS]
    if unknown:
        raise ValueError(f"unknown quirk kinds {unknown}; choose from {QUIRK_KINDS}")
    if quirk_rate > 0 and not kinds:
        raise ValueError("quirk_rate > 0 needs at least one quirk kind")


def generate_labelled(
    n_rows: int,
    seed: int = 42,
    quirk_rate: float = 0.0,
    quirk_kinds: Sequence[str] = QUIRK_KINDS,
) -> Iterator[tuple[Record, str | None]]:
    """Like generate_records, but yields (record, quirk kind or None) pairs."""
    kinds = tuple(quirk_kinds)
    _check_args(n_rows, quirk_rate, kinds)  # here, not on the first next()
    return _rows(n_rows, seed, quirk_rate, kinds)


def _rows(n_rows: int, seed: int, quirk_rate: float, kinds: tuple[str, ...]) -> Iterator[tuple[Record, str | None]]:
    rand = random.Random(seed).random
    q = _QuirkContext(seed)
    qrand = q.rand
    uid_rng = random.Random(f"{seed}:uids")
    uid_keys = tuple(uid_rng.getrandbits(32) for _ in range(3))
    cats = CATEGORIES
    for n in range(n_rows):
        cat = cats[int(rand() * len(cats))]
        attrs = cat.draw(rand)
        ind = cat.targets(rand)
        rec = {
            "uid": _isbn10(n, uid_keys) if cat.isbn else _asin(n, uid_keys),
            "title": cat.title(attrs, rand),
            "content": cat.describe(attrs, rand),
            "target_ind": ind,
            "target_rel": [1.0] * len(ind),
        }
        if quirk_rate and qrand() < quirk_rate:
            kind = kinds[int(qrand() * len(kinds))]
            q.attrs = attrs
            out = _QUIRKS[kind](rec, q)
            if out is not None:
                yield out, kind
                continue
        q.remember(n, rec, cat, attrs)
        yield rec, None


def generate_records(
    n_rows: int,
    seed: int = 42,
    quirk_rate: float = 0.0,
    quirk_kinds: Sequence[str] = QUIRK_KINDS,
) -> Iterator[Record]:
    """Yield n_rows records in order: dicts, or str/bytes for raw broken lines.

    With quirk_rate > 0 about that fraction of rows carries one quirk drawn
    uniformly from quirk_kinds (names from QUIRK_KINDS; repeat a name to weight
    it). A duplicate quirk on a row with no earlier clean row leaves it clean.
    """
    return (rec for rec, _ in generate_labelled(n_rows, seed, quirk_rate, quirk_kinds))


def _encode_line(rec: Record) -> bytes:
    if isinstance(rec, bytes):
        return rec
    if isinstance(rec, str):
        return rec.encode("utf-8")
    return _ENCODE(rec).encode("utf-8")


def write_jsonl(path: str | os.PathLike, records: Iterable[Record]) -> int:
    """Write one line per record atomically; return the number of lines."""
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    tmp = os.path.join(folder, f".{os.path.basename(path)}.{os.getpid()}.tmp")
    count = 0
    try:
        # os.open with 0o666 lets the umask decide the final permissions.
        with open(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o666), "wb") as f:
            batch: list[bytes] = []
            for rec in records:
                batch.append(_encode_line(rec))
                if len(batch) == 8192:
                    f.write(b"\n".join(batch) + b"\n")
                    count += len(batch)
                    batch.clear()
            if batch:
                f.write(b"\n".join(batch) + b"\n")
                count += len(batch)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return count


# ------------------------------------------------------------------- CLI ----


def _parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Generate synthetic AmazonTitles-shaped product data (JSON Lines).",
        epilog="Quirk kinds: " + ", ".join(QUIRK_KINDS),
    )
    parser.add_argument("--rows", type=int, help=f"number of lines (default {DEMO_ROWS})")
    parser.add_argument("--seed", type=int, default=DEMO_SEED, help="random seed (default 42)")
    parser.add_argument(
        "--quirk-rate",
        type=float,
        help="fraction of rows with one quirk (default 0, or 0.03 with --demo)",
    )
    parser.add_argument(
        "--quirk-kinds",
        help="comma-separated quirk kinds to draw from; repeat a kind to draw it "
        "more often (default all, or the benign demo set with --demo)",
    )
    parser.add_argument(
        "--demo",
        action="store_true",
        help="make the shipped demo catalog: 400 rows, quirk rate 0.03, only benign "
        "quirks (" + ", ".join(dict.fromkeys(DEMO_QUIRK_KINDS)) + ")",
    )
    parser.add_argument("--out", required=True, help="output path (written atomically)")
    args = parser.parse_args(argv)
    if args.rows is None:
        args.rows = DEMO_ROWS
    if args.quirk_rate is None:
        args.quirk_rate = DEMO_QUIRK_RATE if args.demo else 0.0
    if args.quirk_kinds is None:
        args.quirk_kinds = DEMO_QUIRK_KINDS if args.demo else QUIRK_KINDS
    else:
        args.quirk_kinds = tuple(k.strip() for k in args.quirk_kinds.split(",") if k.strip())
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = _parse_args(argv)
    try:
        records = generate_records(args.rows, args.seed, args.quirk_rate, args.quirk_kinds)
        count = write_jsonl(args.out, records)
    except ValueError as err:
        print(f"make_catalog: {err}", file=sys.stderr)
        return 2
    print(f"wrote {count} rows to {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
