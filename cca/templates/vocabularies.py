"""Named vocabularies that templates ``sample(...)`` from (upstream never released them).

Plain lists of strings, or lists of :class:`~cca.templates.values.Worded` quantities
(text + exact value) for the numeric ones. Items that a template pluralises by appending
"s" (fruits, units) are chosen so that "+s" is a correct plural.
"""
from __future__ import annotations

from fractions import Fraction as F

from cca.templates.values import Worded


def _w(pairs):
    return tuple(Worded(t, v if not isinstance(v, F) or v.denominator != 1 else int(v)) for t, v in pairs)


NAMES_MALE = (
    "James", "John", "Robert", "Michael", "David", "William", "Richard", "Joseph", "Thomas",
    "Charles", "Daniel", "Matthew", "Anthony", "Mark", "Steven", "Paul", "Andrew", "Joshua",
    "Kevin", "Brian", "George", "Edward", "Ryan", "Jacob", "Gary", "Eric", "Jack", "Peter",
    "Ben", "Roger", "Jerry", "Frankie", "Craig", "Brett", "Jasper", "Mike", "Allan", "Nate",
    "Marco", "Raphael", "Brandon", "Brendan", "Watson", "Joe", "Deandre", "Gordon", "Artie",
    "Sam", "Lamar", "Cole", "Ray", "Harry", "Teddy", "Pierson", "Benny", "Garrett", "Josh",
    "Chester", "Omar", "Luis", "Hiroshi", "Ravi", "Kwame", "Mateo", "Liam", "Noah",
)
NAMES_FEMALE = (
    "Mary", "Patricia", "Jennifer", "Linda", "Elizabeth", "Barbara", "Susan", "Jessica",
    "Sarah", "Karen", "Emily", "Sophie", "Carol", "Sara", "Maria", "Aisha", "Katy", "Martha",
    "Elise", "Sally", "Carmen", "Alison", "Jackie", "Julie", "Julia", "Jewel", "Toula", "Dana",
    "Elena", "Angela", "Morgan", "Candy", "Shiela", "Abby", "Mei", "Stacy", "Rose", "Emma",
    "Mia", "Dorothy", "Olivia", "Ava", "Isabella", "Chloe", "Grace", "Hannah", "Priya",
    "Yuki", "Fatima", "Amara", "Lucia", "Zoe",
)
NAMES = NAMES_MALE + NAMES_FEMALE

WEEKDAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")
COLORS = ("red", "blue", "green", "yellow", "orange", "purple", "pink", "white", "black",
          "brown", "gray", "teal")
FRUITS = ("apple", "banana", "pineapple", "kiwi", "mango", "pear", "plum", "orange", "lemon",
          "apricot", "melon", "fig", "grape", "lime")
CITIES = ("Los Angeles", "New York", "Chicago", "Houston", "Phoenix", "Philadelphia",
          "San Antonio", "San Diego", "Dallas", "Seattle", "Boston", "Denver", "Miami", "Atlanta")
SPORTS = ("basketball", "soccer", "tennis", "volleyball", "baseball", "football", "hockey",
          "golf", "badminton", "table tennis")
CURRENCIES_SYM = ("$", "€", "£")
WEIGHTS_SM = ("ounce", "gram")
WEIGHTS_MED = ("pound", "kilogram")
LENGTH_LG = ("mile", "kilometer")

# "<n> times as many": multiplicative words and their factor.
MULTI_TIMES = _w([("twice", 2), ("three times", 3), ("four times", 4), ("five times", 5)])
MULTIPLE_ICE = _w([("twice", 2), ("thrice", 3)])
MULTIPLE = _w([("double", 2), ("triple", 3), ("quadruple", 4)])

# Fractions: spelled ("fractions", "fraction_alph"), numerals ("fraction_nums"), both
# ("fraction_alnum"), decimals ("fraction_decimals", plain numbers, e.g. prices).
FRACTIONS = _w([("half", F(1, 2)), ("a third", F(1, 3)), ("a quarter", F(1, 4)),
                ("a fifth", F(1, 5)), ("two-thirds", F(2, 3)), ("three-quarters", F(3, 4))])
FRACTION_ALPH = _w([("half", F(1, 2)), ("a third", F(1, 3)), ("a quarter", F(1, 4)),
                    ("a fifth", F(1, 5)), ("a tenth", F(1, 10))])
FRACTION_NUMS = _w([("1/2", F(1, 2)), ("1/3", F(1, 3)), ("1/4", F(1, 4)), ("1/5", F(1, 5)),
                    ("2/3", F(2, 3)), ("3/4", F(3, 4)), ("2/5", F(2, 5)), ("3/5", F(3, 5)),
                    ("1/10", F(1, 10))])
FRACTION_ALNUM = _w([("half", F(1, 2)), ("1/2", F(1, 2)), ("one-third", F(1, 3)), ("1/3", F(1, 3)),
                     ("two-thirds", F(2, 3)), ("2/3", F(2, 3)), ("a quarter", F(1, 4)),
                     ("1/4", F(1, 4)), ("three quarters", F(3, 4)), ("3/4", F(3, 4)),
                     ("one-fifth", F(1, 5)), ("1/5", F(1, 5)), ("two-fifths", F(2, 5)),
                     ("three-fifths", F(3, 5)), ("four-fifths", F(4, 5)), ("1/8", F(1, 8)),
                     ("1/10", F(1, 10)), ("1/16", F(1, 16))])
FRACTION_DECIMALS = (F(1, 10), F(3, 20), F(1, 5), F(1, 4), F(3, 10), F(2, 5), F(1, 2), F(3, 4))

VOCABULARIES: dict[str, tuple] = {
    "names_male": NAMES_MALE,
    "names_female": NAMES_FEMALE,
    "names": NAMES,
    "weekdays": WEEKDAYS,
    "colors": COLORS,
    "fruits": FRUITS,
    "cities": CITIES,
    "sports": SPORTS,
    "currencies_sym": CURRENCIES_SYM,
    "weights_sm": WEIGHTS_SM,
    "weights_med": WEIGHTS_MED,
    "length_lg": LENGTH_LG,
    "multi_times": MULTI_TIMES,
    "multiple_ice": MULTIPLE_ICE,
    "multiple": MULTIPLE,
    "fractions": FRACTIONS,
    "fraction_alph": FRACTION_ALPH,
    "fraction_nums": FRACTION_NUMS,
    "fraction_alnum": FRACTION_ALNUM,
    "fraction_decimals": FRACTION_DECIMALS,
}
