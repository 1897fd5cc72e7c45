"""Upstream GSM-Symbolic templates that fail :func:`check_defaults`, and why.

Each value is the exact reason that ``check_defaults`` reports (``default_problems``
joined by `` | ``); the tests check that every listed template still fails for exactly
that reason, and ``check_defaults(t, allow_known=True)`` accepts only that failure.
Each entry was read in the template file; the comment says what upstream changed.

* ``symbolic/*`` are checked against the source GSM8K item (``against_original=True``).
  Most entries are wording that upstream edited outside the slots, or a slot followed by
  a literal plural "s"; only ``symbolic/0062`` also has a wrong ``#answer``.
* ``p1/*`` and ``p2/*`` are perturbed problems whose ``question``/``answer`` are the
  unperturbed GSM8K item by design, so they are checked with ``against_original=False``
  (defaults usable, ``#answer`` equal to the solution's ``####``).

Templates whose ``#answer`` never agrees with their solution's ``####`` cannot be drawn
(:func:`draw_instances` raises): ``symbolic/0062``, ``p1/0074``, ``p1/0089``, ``p2/0026``.
"""

KNOWN_UPSTREAM_DEFECTS: dict[str, str] = {
    # number words in GSM8K ('Twenty', 'thirty', ...) became digit slots
    'symbolic/0004': "question: 'Twenty' -> '20'; 'three' -> '3'; 'four' -> '4'; 'thirty' -> '30'",
    # 'a pineapple field' lost its article
    'symbolic/0006': "question: 'a' -> ''",
    # 'Hay is' became '{o1} are', 'bales' became 'packs'
    'symbolic/0007': "question: 'is' -> 'are'; 'bales.' -> 'packs.'",
    # clauses reordered (8 small cubes before 7 medium), '1/2 an ounce' became '1/2 of
    # ounce'
    'symbolic/0011': (
        "question: 'an' -> 'of'; '' -> '8 small cubes, and'; 'cubes, and 8 small' -> ''"),
    # 'on the tray' became 'on some {surface}s'
    'symbolic/0012': "question: 'the tray.' -> 'some trays.'",
    # '{n,1} potted plants' is plural whatever n is (GSM8K: '1 potted plant')
    'symbolic/0013': "question: 'plant' -> 'plants'",
    # 'to school' became 'to the {loc1}'
    'symbolic/0014': "question: '' -> 'the'",
    # '{food}s' pluralises 'gingerbread'
    'symbolic/0016': "question: 'gingerbread' -> 'gingerbreads'",
    # '{unit}s' after {k,1} gives '1 miles'
    'symbolic/0017': "question: 'mile' -> 'miles'",
    # 'late for the weekend' shortened to 'late'
    'symbolic/0021': "question: 'late for the weekend,' -> 'late,'",
    # '300g' became '{size} {unit}', and 'grams' the singular slot default 'gram'
    'symbolic/0024': "question: '300g' -> '300 gram'; 'grams' -> 'gram'",
    # 'gets' became 'receives', pronouns became {name}
    'symbolic/0027': "question: 'gets' -> 'receives'; 'He' -> 'James'; 'he' -> 'James'",
    # the pronoun 'he' became {name1}
    'symbolic/0029': "question: 'he' -> 'Brett'",
    # 'end of the summer' became 'end of the break'
    'symbolic/0033': "question: 'summer.' -> 'break.'",
    # 'half the cost' became '{fraction} of the cost'
    'symbolic/0035': "question: '' -> 'of'",
    # 'an 8 hour day' became '{h} hours each day'
    'symbolic/0039': "question: 'an' -> ''; 'hour' -> 'hours each'",
    # 'Buy 1 pound at $3' became 'Buy {n1} {unit}s at $3 per {unit}'
    'symbolic/0040': "question: 'pound' -> 'pounds'; '$3,' -> '$3 per pound,'; 'pound' -> 'pounds'",
    # 'cost' became 'costs' (twice)
    'symbolic/0042': "question: 'cost' -> 'costs'; 'cost' -> 'costs'",
    # the width '12 inches' became '{plant_width} {unit_length}' = '12 feet'
    'symbolic/0045': "question: 'inches' -> 'feet'",
    # 'Stacy. And Mei' became 'Stacy, and Mei'
    'symbolic/0047': "question: 'Stacy. And' -> 'Stacy, and'",
    # 'shrimp' pluralised as '{food}s'; 'cook' became 'saute'
    'symbolic/0048': (
        "question: 'shrimp' -> 'shrimps'; 'shrimp' -> 'shrimps'; 'cook' -> 'saute'; "
        "'shrimp?' -> 'shrimps?'"),
    # 'first two' became digit slots, 'He' became {name}, '$.40' became '$0.40'
    'symbolic/0049': "question: 'two' -> '2'; 'two' -> '2'; 'He' -> 'John'; '$.40' -> '$0.40'",
    # 'twenty dollar bills' became '{cur}{bill} bills'
    'symbolic/0052': "question: 'twenty dollar' -> '$twenty'",
    # '11 more' became '11 points more'
    'symbolic/0053': "question: '' -> 'points'",
    # 'an apple' became 'a whole {fruit}', '{n1,1} slices' is always plural
    'symbolic/0054': "question: 'an' -> 'a whole'; 'slice,' -> 'slices,'",
    # the default 'ounces' is pluralised again ('{unit}s' -> 'ouncess', 'glasss')
    'symbolic/0056': "question: 'ounces' -> 'ouncess'; 'glasses' -> 'glasss'",
    # 'an' became 'a' before {tool2}, 'dwarves' became '{worker}s'
    'symbolic/0058': "question: 'an' -> 'a'; 'an' -> 'a'; 'dwarves' -> 'dwarfs'",
    # '{spill} liters' is plural after 'one'
    'symbolic/0059': "question: 'liter' -> 'liters'",
    # articles dropped around slots, 'wasn't a marble' became "weren't {objects}"
    'symbolic/0061': "question: 'a' -> ''; 'wasn't a marble,' -> 'weren't marbles,'; 'a' -> ''",
    # #answer omits a term: 2*(n1 + p/100*n1) instead of the solution's 2*(n1 + (n1 +
    # p/100*n1)); GSM8K's 78 is the solution's value, so no instance can be drawn
    'symbolic/0062': (
        "solution's #### gives 78, #answer gives 48 | answer: "
        '#answer gives 48 at the defaults, GSM8K says 78 | question: '
        "'magicians' -> 'magician's'; 'many,' -> 'many'"),
    # 'an accountant' became 'one accountant', 'the taxes' became 'it'
    'symbolic/0065': "question: 'an' -> 'one'; 'the taxes' -> 'it'",
    # 'her spools' became 'the spools'
    'symbolic/0066': "question: 'her' -> 'the'",
    # a comma added after 'weight'
    'symbolic/0067': "question: 'weight' -> 'weight,'",
    # '{animal2}s' pluralises 'sheep'
    'symbolic/0071': "question: 'sheep,' -> 'sheeps,'",
    # the two price clauses swapped order
    'symbolic/0075': (
        "question: '' -> 'green balls cost $3, and'; '$5 and green balls cost $3.' -> '$5.'"),
    # 'left' became 'left in change'
    'symbolic/0080': "question: 'left.' -> 'left in change.'",
    # the second {item1} slot's default is the typo 'tamk top' (GSM8K: 'top')
    'symbolic/0086': "question: '' -> 'tamk'",
    # 'at a rate of speed four times faster' became '{mult_run,four} faster'
    'symbolic/0088': "question: 'at a rate of speed' -> ''; 'times' -> ''",
    # '{free_hours,1} hours' is plural after 1
    'symbolic/0089': "question: 'hour' -> 'hours'",
    # 'three times as many' became '{mult1,three} as many' (same for 'four')
    'symbolic/0090': "question: 'times' -> ''; 'times' -> ''",
    # 'is twice as much corn' became 'are {mult} as many {food1}s', '{food2}s' doubles the s
    # of 'cannolis'
    'symbolic/0091': (
        "question: 'is' -> 'are'; 'much corn' -> 'many corns'; 'cannolis.' -> 'cannoliss.'; "
        "'cannolis' -> 'cannoliss'; 'cannolis' -> 'cannoliss'; 'cannolis.' -> 'cannoliss.'; "
        "'cannolis' -> 'cannoliss'"),
    # 'forgot' became 'forgotten'
    'symbolic/0092': "question: 'forgot' -> 'forgotten'",
    # the default of '{activity3,go-karts}' is lower case where GSM8K has 'Go-karts'
    'symbolic/0096': "question: 'Go-karts' -> 'go-karts'",
    # 'A plague infects ten people' became 'A new plague infects {n0,10} people', other
    # number words became digits
    'symbolic/0098': "question: '' -> 'new'; 'ten' -> '10'; 'six' -> '6'; 'three' -> '3'",
    # the defaults break 'divides(p*n, nn)' (12*13 is not a multiple of 7); there #answer's
    # '/' and the solution's '//' differ
    'p1/0005': "solution's #### gives 20, #answer gives 19",
    # the defaults break 'is_int((n1 + n2) * frac)' (9 * 1/2); there #answer and the
    # solution's int() differ
    'p1/0026': "solution's #### gives 84, #answer gives 87.5",
    # the solution's #### has a sign error (graduates+faculty-extra); the defaults also
    # break 'is_int(...)', where it shows
    'p1/0046': "solution's #### gives 5, #answer gives 4",
    # 'width' has no slot and width*(width+3) == 360 has no whole solution: the defaults are
    # not a valid problem
    'p1/0050': (
        "the answer needs 'width', "
        'which has no slot default and cannot be solved from the conditions'),
    # #answer divides by all students, the question and solution by the present ones: they
    # never agree, so no instance can be drawn
    'p1/0074': "solution's #### gives 56, #answer gives 51",
    # the defaults break 'is_int(... * (1-disc/100))' (157 * 0.9 = 141.3)
    'p1/0075': "solution's #### gives 141, #answer gives 141.3",
    # 'frac_skip' is defined twice and its slots stand for two quantities ('half' as fast,
    # 'two-thirds' of the time)
    'p1/0088': "the slots of 'frac_skip' disagree: 'half' vs 'two-thirds'",
    # #answer leaves out the insurance 'extra' that the question and the solution's ####
    # add: they never agree, so no instance can be drawn
    'p1/0089': "solution's #### gives 100, #answer gives 75",
    # #answer has a spurious '- 1' in its last term: it never agrees with the solution's
    # ####, so no instance can be drawn
    'p2/0026': "solution's #### gives 587, #answer gives 577",
    # the default {n3,6} counts dozens but n3 counts items (n3 // 12 = 0 at the defaults)
    'p2/0036': (
        'question_annotated line 24 `#answer: ((total * 100 / (100-disc)) - (n1//12*p1) '
        '- (n2//12*p2))/(n3//12)`: cannot evaluate the answer at the defaults: division by zero'),
    # the solution's #### has a sign error (graduates+faculty-extra); the defaults also
    # break 'is_int(...)', where it shows
    'p2/0046': "solution's #### gives 5, #answer gives 4",
}

UNDRAWABLE_UPSTREAM = frozenset({"symbolic/0062", "p1/0074", "p1/0089", "p2/0026"})
