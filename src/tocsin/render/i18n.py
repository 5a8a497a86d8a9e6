"""The public pages' words in Kazakh, Russian and English: UI strings, dates, explanations.

Every string a page shows exists in each of urls.PAGE_LANGUAGES; tests/test_pages.py checks
that the three tables have the same keys. Names of areas are quoted rather than declined, so
that a sentence reads correctly whatever the area is called.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from zoneinfo import ZoneInfo

LANGUAGE_NAMES = {"kk": "Қазақша", "ru": "Русский", "en": "English"}
"""Each page language in its own name, for the language switch."""

LANGUAGES_IN = {
    "kk": {"kk": "қазақ", "ru": "орыс", "en": "ағылшын"},
    "ru": {"kk": "казахский", "ru": "русский", "en": "английский"},
    "en": {"kk": "Kazakh", "ru": "Russian", "en": "English"},
}
"""Names of languages as a reader of each page language says them."""

MONTHS = {
    "kk": ("қаңтар", "ақпан", "наурыз", "сәуір", "мамыр", "маусым", "шілде", "тамыз",
           "қыркүйек", "қазан", "қараша", "желтоқсан"),
    "ru": ("января", "февраля", "марта", "апреля", "мая", "июня", "июля", "августа",
           "сентября", "октября", "ноября", "декабря"),
    "en": ("January", "February", "March", "April", "May", "June", "July", "August",
           "September", "October", "November", "December"),
}
"""Month names as they stand in a date: nominative in Kazakh and English, genitive in Russian."""

KK_MONTHS_LOCATIVE = ("қаңтарда", "ақпанда", "наурызда", "сәуірде", "мамырда", "маусымда",
                      "шілдеде", "тамызда", "қыркүйекте", "қазанда", "қарашада", "желтоқсанда")
"""'in January' and so on, for 'declared on 7 January' in a Kazakh sentence."""

UI: dict[str, dict[str, str]] = {
    "en": {
        "site": "Threat levels",
        "skip": "Skip to content",
        "main_nav": "Main",
        "lang_nav": "Language",
        "nav_overview": "Levels by area",
        "nav_history": "History",
        "banner": "Levels as of {time}",
        "see_current": "see the current levels",
        "as_of": "Last change: {time}",
        "overview_title": "Threat levels by area",
        "map_alt": "Map: {scheme} by area. The list below names every area's level.",
        "no_level": "No level",
        "no_level_meaning": "No threat level is declared for these areas.",
        "area_no_level": "No threat level is declared for this area.",
        "since": "Since",
        "until": "Until",
        "until_further_notice": "until further notice",
        "before_any": "before any declaration",
        "why": "Why this level",
        "meaning": "What it means",
        "measures": "What the authorities will do",
        "guidance": "What you should do",
        "declared_by": "Declared by",
        "timeline": "Levels in this area over time",
        "current": "current",
        "scheduled": "scheduled",
        "embed": "Embed this level",
        "embed_help": "Copy this HTML to show the live level of {area} on your own site:",
        "embed_code": "HTML code",
        "badge_alt": "{scheme}: {area}",
        "hierarchy": "Area hierarchy",
        "within": "Areas within {area}",
        "beneath_one": "Inside it: {level} in 1 area ({where})",
        "beneath_many": "Inside it: {level} in {count} areas ({where})",
        "search_label": "Find an area",
        "search_button": "Search",
        "search_title": "Areas matching “{query}”",
        "search_none": "No area matches “{query}”.",
        "search_more": "Showing the first {shown} of {count}.",
        "with_level": "Areas with a level",
        "with_level_more": "and {count} more: use the search or the regions below.",
        "regions": "Regions",
        "earlier_periods": "Earlier levels of this area are in the history.",
        "about_scheme": "About this scale",
        "levels_of_scheme": "Its levels, lowest first:",
        "declaration_title": "Declaration {id}",
        "scheme": "Scale",
        "level": "Level",
        "areas": "Areas",
        "effective": "In effect from",
        "expires": "Expires",
        "status": "Status",
        "published": "Published on {time}",
        "cancelled": "Cancelled on {time}. Reason: {reason}",
        "in_effect": "In effect",
        "not_yet": "Not yet in effect",
        "ended": "Ended on {time}",
        "replaced": "Replaced on {time}",
        "unpublished": "Not yet published at this time",
        "break_glass": "Published without a second person's approval (emergency). Reason given",
        "replaces": "Replaces",
        "replaced_by": "Replaced by",
        "description": "Details",
        "decl_measures": "Measures",
        "instructions": "Instructions",
        "shown_in": "There is no English text; shown in {language}.",
        "data": "Data (JSON)",
        "history_title": "History of declarations",
        "filter": "Filter",
        "filter_area": "Area",
        "all_areas": "All areas",
        "filter_scheme": "Scale",
        "all_schemes": "All scales",
        "filter_from": "From",
        "filter_before": "Before",
        "filter_submit": "Show",
        "history_none": "No declaration matches.",
        "history_shown": "{total} declarations match; {first}–{last} are shown, newest first.",
        "history_older": "Older declarations",
        "history_newer": "Newer declarations",
        "term": "Term",
        "error_400": "The request is not valid",
        "error_404": "Not found",
        "error_other": "Something went wrong",
        "error_title": "Error {status}",
        "level_updated": "Level updated",
        "open_data": "Open data",
        "footer_note": "Published with tocsin, open-source software.",
        "error_403": "Not allowed",
        "error_429": "Too many requests",
        "subscribe_title": "Hear when the level here changes",
        "subscribe_email": "Your e-mail address",
        "subscribe_button": "Subscribe by e-mail",
        "subscribe_note": ("We will send a message to confirm the address first, and every "
                           "message has a link to unsubscribe in one click."),
        "push_button": "Notify me in this browser",
        "push_done": ("Subscribed: this browser will show a notification when the level here "
                      "changes."),
        "push_denied": ("Notifications are blocked for this site; allow them in the browser's "
                        "settings."),
        "push_failed": "Could not subscribe. Try again later.",
        "sent_title": "Check your inbox",
        "sent_text": ("Unless this address is already subscribed, a message is on its way to "
                      "it. Open the link in it to confirm: until then nothing else is sent."),
        "sent_back": "Back to {area}",
        "confirm_title": "Confirm your subscription",
        "confirm_text": "Press the button to receive e-mail when the level changes in: {areas}.",
        "confirm_button": "Confirm",
        "confirmed_title": "Subscription confirmed",
        "confirmed_text": "Confirmed: you will hear changes of the level in: {areas}.",
        "unsubscribe_link": "Unsubscribe",
        "unsubscribe_title": "Unsubscribe",
        "unsubscribe_text": "Press the button to stop hearing changes of the level in: {areas}.",
        "unsubscribe_button": "Unsubscribe",
        "unsubscribed_title": "Unsubscribed",
        "unsubscribed_text": ("You will receive nothing more from this subscription. You can "
                              "subscribe again on any area's page."),
        "sub_no_email": "No e-mail address was given: write yours in the form.",
        "sub_bad_email": "{value} is not an e-mail address: give one like name@example.kz.",
        "sub_bad_area": "Area {value} is not known: subscribe on the area's own page.",
        "sub_bad_language": ("Language {value} is not one of this site's (kk, ru, en): send the "
                             "form from an area page."),
        "sub_form_only": ("This address takes the subscription form only: send it from an "
                          "area page."),
        "sub_cross_site": ("This form was sent from another site: use the form on this site's "
                           "area pages."),
        "sub_too_large": "The form is too large: send only the e-mail address.",
        "sub_slow_down": ("Too many requests from your address: wait {seconds} seconds and "
                          "try again."),
        "sub_bad_link": "This link is not valid: use the link exactly as the message gave it.",
        "sub_unknown": "There is no such subscription: subscribe again on an area's page.",
        "sub_ended": "This subscription has ended: subscribe again on an area's page.",
    },
    "ru": {
        "site": "Уровни угрозы",
        "skip": "Перейти к содержанию",
        "main_nav": "Основная навигация",
        "lang_nav": "Язык",
        "nav_overview": "Уровни по территориям",
        "nav_history": "История",
        "banner": "Уровни по состоянию на {time}",
        "see_current": "смотреть текущие уровни",
        "as_of": "Последнее изменение: {time}",
        "overview_title": "Уровни угрозы по территориям",
        "map_alt": "Карта: {scheme} по территориям. Уровень каждой территории указан в "
                   "списке ниже.",
        "no_level": "Уровень не объявлен",
        "no_level_meaning": "Для этих территорий уровень угрозы не объявлен.",
        "area_no_level": "Для этой территории уровень угрозы не объявлен.",
        "since": "Действует с",
        "until": "Действует до",
        "until_further_notice": "до особого распоряжения",
        "before_any": "до первого объявления",
        "why": "Почему этот уровень",
        "meaning": "Что это значит",
        "measures": "Что будут делать власти",
        "guidance": "Что делать вам",
        "declared_by": "Кем объявлен",
        "timeline": "Уровни на этой территории по времени",
        "current": "текущий",
        "scheduled": "запланирован",
        "embed": "Встроить на сайт",
        "embed_help": "Скопируйте этот HTML-код, чтобы показывать на своём сайте текущий "
                      "уровень для территории «{area}»:",
        "embed_code": "HTML-код",
        "badge_alt": "{scheme}: {area}",
        "hierarchy": "Иерархия территорий",
        "within": "Территории в составе «{area}»",
        "beneath_one": "Внутри: {level} в 1 территории ({where})",
        "beneath_many": "Внутри: {level} в {count} территориях ({where})",
        "search_label": "Найти территорию",
        "search_button": "Найти",
        "search_title": "Территории по запросу «{query}»",
        "search_none": "Ни одна территория не подходит под запрос «{query}».",
        "search_more": "Показаны первые {shown} из {count}.",
        "with_level": "Территории с объявленным уровнем",
        "with_level_more": "и ещё {count}: воспользуйтесь поиском или регионами ниже.",
        "regions": "Регионы",
        "earlier_periods": "Более ранние уровни этой территории — в истории.",
        "about_scheme": "Об этой шкале",
        "levels_of_scheme": "Её уровни, от низшего:",
        "declaration_title": "Объявление {id}",
        "scheme": "Шкала",
        "level": "Уровень",
        "areas": "Территории",
        "effective": "Действует с",
        "expires": "Истекает",
        "status": "Статус",
        "published": "Опубликовано {time}",
        "cancelled": "Отменено {time}. Причина: {reason}",
        "in_effect": "Действует",
        "not_yet": "Ещё не вступило в силу",
        "ended": "Завершилось {time}",
        "replaced": "Заменено {time}",
        "unpublished": "На этот момент ещё не опубликовано",
        "break_glass": ("Опубликовано без одобрения второго лица (чрезвычайная ситуация). "
                        "Указанная причина"),
        "replaces": "Заменяет",
        "replaced_by": "Заменено объявлением",
        "description": "Подробности",
        "decl_measures": "Меры",
        "instructions": "Указания",
        "shown_in": "Текста на русском нет; показан текст на языке: {language}.",
        "data": "Данные (JSON)",
        "history_title": "История объявлений",
        "filter": "Отбор",
        "filter_area": "Территория",
        "all_areas": "Все территории",
        "filter_scheme": "Шкала",
        "all_schemes": "Все шкалы",
        "filter_from": "С",
        "filter_before": "До (не включая)",
        "filter_submit": "Показать",
        "history_none": "Подходящих объявлений нет.",
        "history_shown": "Подходящих объявлений: {total}; показаны {first}–{last}, "
                         "сначала новые.",
        "history_older": "Более ранние объявления",
        "history_newer": "Более поздние объявления",
        "term": "Срок",
        "error_400": "Неверный запрос",
        "error_404": "Не найдено",
        "error_other": "Что-то пошло не так",
        "error_title": "Ошибка {status}",
        "level_updated": "Уровень обновлён",
        "open_data": "Открытые данные",
        "footer_note": "Опубликовано с помощью tocsin — открытого программного обеспечения.",
        "error_403": "Доступ запрещён",
        "error_429": "Слишком много запросов",
        "subscribe_title": "Узнавать об изменении уровня здесь",
        "subscribe_email": "Ваш адрес электронной почты",
        "subscribe_button": "Подписаться по почте",
        "subscribe_note": ("Сначала мы отправим письмо для подтверждения адреса; в каждом "
                           "письме есть ссылка, чтобы отписаться одним нажатием."),
        "push_button": "Уведомлять в этом браузере",
        "push_done": ("Подписка оформлена: браузер покажет уведомление, когда уровень здесь "
                      "изменится."),
        "push_denied": ("Уведомления для этого сайта запрещены; разрешите их в настройках "
                        "браузера."),
        "push_failed": "Не удалось подписаться. Попробуйте позже.",
        "sent_title": "Проверьте почту",
        "sent_text": ("Если этот адрес ещё не подписан, на него уже идёт письмо. Откройте "
                      "ссылку из письма, чтобы подтвердить подписку: до тех пор ничего другого "
                      "не придёт."),
        "sent_back": "Вернуться к территории «{area}»",
        "confirm_title": "Подтвердите подписку",
        "confirm_text": ("Нажмите кнопку, чтобы получать письма об изменении уровня на "
                         "территориях: {areas}."),
        "confirm_button": "Подтвердить",
        "confirmed_title": "Подписка подтверждена",
        "confirmed_text": ("Подтверждено: вы будете получать сообщения об изменении уровня на "
                           "территориях: {areas}."),
        "unsubscribe_link": "Отписаться",
        "unsubscribe_title": "Отписаться",
        "unsubscribe_text": ("Нажмите кнопку, чтобы больше не получать сообщения об изменении "
                             "уровня на территориях: {areas}."),
        "unsubscribe_button": "Отписаться",
        "unsubscribed_title": "Подписка отменена",
        "unsubscribed_text": ("Вы больше не будете получать сообщения по этой подписке. "
                              "Подписаться снова можно на странице любой территории."),
        "sub_no_email": "Адрес электронной почты не указан: впишите его в форму.",
        "sub_bad_email": ("«{value}» — не адрес электронной почты: укажите адрес вида "
                          "name@example.kz."),
        "sub_bad_area": ("Территория «{value}» неизвестна: подпишитесь на странице самой "
                         "территории."),
        "sub_bad_language": ("Язык «{value}» не поддерживается сайтом (kk, ru, en): отправьте "
                             "форму со страницы территории."),
        "sub_form_only": ("Этот адрес принимает только форму подписки: отправьте её со "
                          "страницы территории."),
        "sub_cross_site": ("Форма отправлена с другого сайта: воспользуйтесь формой на "
                           "страницах территорий этого сайта."),
        "sub_too_large": "Форма слишком велика: отправьте только адрес электронной почты.",
        "sub_slow_down": ("Слишком много запросов с вашего адреса: подождите {seconds} с и "
                          "попробуйте снова."),
        "sub_bad_link": ("Эта ссылка недействительна: используйте ссылку в точности так, как "
                         "она дана в письме."),
        "sub_unknown": "Такой подписки нет: подпишитесь снова на странице территории.",
        "sub_ended": "Эта подписка завершена: подпишитесь снова на странице территории.",
    },
    "kk": {
        "site": "Қауіп деңгейлері",
        "skip": "Мазмұнға өту",
        "main_nav": "Негізгі навигация",
        "lang_nav": "Тіл",
        "nav_overview": "Аумақтар бойынша деңгейлер",
        "nav_history": "Тарих",
        "banner": "{time} жағдай бойынша деңгейлер",
        "see_current": "ағымдағы деңгейлерді қарау",
        "as_of": "Соңғы өзгеріс: {time}",
        "overview_title": "Аумақтар бойынша қауіп деңгейлері",
        "map_alt": "Карта: аумақтар бойынша {scheme}. Әр аумақтың деңгейі төмендегі тізімде "
                   "берілген.",
        "no_level": "Деңгей жарияланбаған",
        "no_level_meaning": "Бұл аумақтар үшін қауіп деңгейі жарияланбаған.",
        "area_no_level": "Бұл аумақ үшін қауіп деңгейі жарияланбаған.",
        "since": "Басталуы",
        "until": "Аяқталуы",
        "until_further_notice": "қосымша хабарландыруға дейін",
        "before_any": "алғашқы мәлімдемеге дейін",
        "why": "Неліктен бұл деңгей",
        "meaning": "Бұл нені білдіреді",
        "measures": "Билік органдары не істейді",
        "guidance": "Сіз не істеуіңіз керек",
        "declared_by": "Кім жариялады",
        "timeline": "Осы аумақтағы деңгейлер тарихы",
        "current": "ағымдағы",
        "scheduled": "жоспарланған",
        "embed": "Сайтқа енгізу",
        "embed_help": "«{area}» үшін ағымдағы деңгейді өз сайтыңызда көрсету үшін осы HTML "
                      "кодын көшіріңіз:",
        "embed_code": "HTML коды",
        "badge_alt": "{scheme}: {area}",
        "hierarchy": "Аумақтар иерархиясы",
        "within": "«{area}» құрамындағы аумақтар",
        "beneath_one": "Ішінде: 1 аумақта {level} ({where})",
        "beneath_many": "Ішінде: {count} аумақта {level} ({where})",
        "search_label": "Аумақты табу",
        "search_button": "Іздеу",
        "search_title": "«{query}» сұрауына сәйкес аумақтар",
        "search_none": "«{query}» сұрауына сәйкес аумақ жоқ.",
        "search_more": "{count} аумақтың алғашқы {shown} көрсетілген.",
        "with_level": "Деңгей жарияланған аумақтар",
        "with_level_more": "және тағы {count}: іздеуді немесе төмендегі өңірлерді пайдаланыңыз.",
        "regions": "Өңірлер",
        "earlier_periods": "Бұл аумақтың бұрынғы деңгейлері тарихта.",
        "about_scheme": "Бұл шкала туралы",
        "levels_of_scheme": "Оның деңгейлері, төменгісінен бастап:",
        "declaration_title": "{id} мәлімдемесі",
        "scheme": "Шкала",
        "level": "Деңгей",
        "areas": "Аумақтар",
        "effective": "Күшіне енуі",
        "expires": "Мерзімінің аяқталуы",
        "status": "Мәртебесі",
        "published": "Жарияланды: {time}",
        "cancelled": "Күші жойылды: {time}. Себебі: {reason}",
        "in_effect": "Күшінде",
        "not_yet": "Әлі күшіне енген жоқ",
        "ended": "Аяқталды: {time}",
        "replaced": "Ауыстырылды: {time}",
        "unpublished": "Бұл уақытта әлі жарияланбаған",
        "break_glass": ("Екінші тұлғаның мақұлдауынсыз жарияланған (төтенше жағдай). "
                        "Көрсетілген себеп"),
        "replaces": "Ауыстырады",
        "replaced_by": "Оны ауыстырған мәлімдеме",
        "description": "Толығырақ",
        "decl_measures": "Шаралар",
        "instructions": "Нұсқаулар",
        "shown_in": "Қазақша мәтін жоқ; {language} тіліндегі мәтін көрсетілген.",
        "data": "Деректер (JSON)",
        "history_title": "Мәлімдемелер тарихы",
        "filter": "Іріктеу",
        "filter_area": "Аумақ",
        "all_areas": "Барлық аумақтар",
        "filter_scheme": "Шкала",
        "all_schemes": "Барлық шкалалар",
        "filter_from": "Бастап",
        "filter_before": "Дейін (қоспағанда)",
        "filter_submit": "Көрсету",
        "history_none": "Сәйкес мәлімдеме жоқ.",
        "history_shown": "Сәйкес мәлімдемелер: {total}; {first}–{last} көрсетілген, "
                         "алдымен жаңалары.",
        "history_older": "Ертеректегі мәлімдемелер",
        "history_newer": "Кейінгі мәлімдемелер",
        "term": "Мерзімі",
        "error_400": "Сұрау дұрыс емес",
        "error_404": "Табылмады",
        "error_other": "Бірдеңе дұрыс болмады",
        "error_title": "{status} қатесі",
        "level_updated": "Деңгей жаңартылды",
        "open_data": "Ашық деректер",
        "footer_note": "tocsin ашық бағдарламалық жасақтамасымен жарияланды.",
        "error_403": "Рұқсат жоқ",
        "error_429": "Сұраулар тым көп",
        "subscribe_title": "Мұндағы деңгей өзгергенін білу",
        "subscribe_email": "Электрондық пошта мекенжайыңыз",
        "subscribe_button": "Пошта арқылы жазылу",
        "subscribe_note": ("Алдымен мекенжайды растау үшін хат жібереміз; әр хатта бір басумен "
                           "жазылымнан бас тартуға арналған сілтеме бар."),
        "push_button": "Осы браузерде хабарлау",
        "push_done": "Жазылдыңыз: деңгей өзгергенде браузер хабарлама көрсетеді.",
        "push_denied": ("Бұл сайтқа хабарламаларға тыйым салынған; оларды браузер "
                        "баптауларында рұқсат етіңіз."),
        "push_failed": "Жазылу мүмкін болмады. Кейінірек қайталап көріңіз.",
        "sent_title": "Поштаңызды тексеріңіз",
        "sent_text": ("Бұл мекенжай әлі жазылмаған болса, оған хат жіберілді. Жазылымды растау "
                      "үшін хаттағы сілтемені ашыңыз: оған дейін басқа ештеңе жіберілмейді."),
        "sent_back": "«{area}» бетіне оралу",
        "confirm_title": "Жазылымды растаңыз",
        "confirm_text": ("Келесі аумақтарда деңгей өзгергенде хат алу үшін батырманы басыңыз: "
                         "{areas}."),
        "confirm_button": "Растау",
        "confirmed_title": "Жазылым расталды",
        "confirmed_text": ("Расталды: келесі аумақтардағы деңгей өзгерістері туралы хабар "
                           "аласыз: {areas}."),
        "unsubscribe_link": "Жазылымнан бас тарту",
        "unsubscribe_title": "Жазылымнан бас тарту",
        "unsubscribe_text": ("Келесі аумақтардағы деңгей өзгерістері туралы хабарларды тоқтату "
                             "үшін батырманы басыңыз: {areas}."),
        "unsubscribe_button": "Бас тарту",
        "unsubscribed_title": "Жазылымнан бас тартылды",
        "unsubscribed_text": ("Бұл жазылым бойынша енді хабар алмайсыз. Кез келген аумақтың "
                              "бетінде қайта жазыла аласыз."),
        "sub_no_email": "Электрондық пошта мекенжайы көрсетілмеген: оны формаға жазыңыз.",
        "sub_bad_email": ("«{value}» электрондық пошта мекенжайы емес: name@example.kz сияқты "
                          "мекенжай жазыңыз."),
        "sub_bad_area": "«{value}» аумағы белгісіз: аумақтың өз бетінде жазылыңыз.",
        "sub_bad_language": ("«{value}» тілі бұл сайтта жоқ (kk, ru, en): форманы аумақ бетінен "
                             "жіберіңіз."),
        "sub_form_only": ("Бұл мекенжай тек жазылу формасын қабылдайды: оны аумақ бетінен "
                          "жіберіңіз."),
        "sub_cross_site": ("Форма басқа сайттан жіберілген: осы сайттың аумақ беттеріндегі "
                           "форманы пайдаланыңыз."),
        "sub_too_large": "Форма тым үлкен: тек электрондық пошта мекенжайын жіберіңіз.",
        "sub_slow_down": ("Сіздің мекенжайыңыздан сұраулар тым көп: {seconds} секунд күтіп, "
                          "қайталап көріңіз."),
        "sub_bad_link": "Бұл сілтеме жарамсыз: сілтемені хатта берілгендей дәл пайдаланыңыз.",
        "sub_unknown": "Мұндай жазылым жоқ: аумақ бетінде қайта жазылыңыз.",
        "sub_ended": "Бұл жазылым аяқталған: аумақ бетінде қайта жазылыңыз.",
    },
}


def ui(lang: str) -> Mapping[str, str]:
    """The UI strings of a page language (English for a language without a table)."""
    return UI.get(lang, UI["en"])


def beneath(lang: str, level: str, count: int, where: list[str]) -> str:
    """'Inside it: Critical (red) in 4 areas (Almaty, …)': the highest level in force inside
    an area, and where (the first few named, then an ellipsis)."""
    listed = ", ".join(where) + (", …" if count > len(where) else "")
    ru_one = lang == "ru" and count % 10 == 1 and count % 100 != 11
    key = "beneath_one" if count == 1 or ru_one else "beneath_many"
    return ui(lang)[key].format(level=level, count=count, where=listed)


def language_name(name_of: str, reader: str) -> str:
    """What a reader of `reader` calls the language `name_of` ('Russian', 'орыс', …)."""
    return LANGUAGES_IN.get(reader, LANGUAGES_IN["en"]).get(name_of, name_of)


def _local(value: datetime, timezone: str | None) -> datetime:
    return value.astimezone(ZoneInfo(timezone or "UTC"))


def _offset(local: datetime) -> str:
    """'UTC+6', 'UTC+5:30', 'UTC-3', 'UTC'."""
    delta = local.utcoffset()
    minutes = int(delta.total_seconds() // 60) if delta is not None else 0
    if minutes == 0:
        return "UTC"
    sign = "+" if minutes > 0 else "-"
    hours, rest = divmod(abs(minutes), 60)
    return f"UTC{sign}{hours}" + (f":{rest:02d}" if rest else "")


def _date(local: datetime, lang: str, *, locative: bool = False) -> str:
    if lang == "kk":
        months = KK_MONTHS_LOCATIVE if locative else MONTHS["kk"]
        return f"{local.year} жылғы {local.day} {months[local.month - 1]}"
    if lang == "ru":
        return f"{local.day} {MONTHS['ru'][local.month - 1]} {local.year} г."
    return f"{local.day} {MONTHS['en'][local.month - 1]} {local.year}"


def format_date(value: datetime, timezone: str | None, lang: str) -> str:
    """'7 January 2022', '7 января 2022 г.', '2022 жылғы 7 қаңтар' in the given time zone."""
    return _date(_local(value, timezone), lang)


def format_time(value: datetime, timezone: str | None, lang: str) -> str:
    """'7 January 2022, 09:00 UTC+6' in the given time zone (UTC when None)."""
    local = _local(value, timezone)
    return f"{_date(local, lang)}, {local:%H:%M} {_offset(local)}"


@dataclass(frozen=True)
class Reason:
    """One declaration that puts the level on the area, as an explanation names it."""

    effective: datetime
    where: str
    """Name of the area the declaration names (the area itself or an ancestor)."""
    countrywide: bool


def explanation(lang: str, *, area: str, level: str | None, baseline: bool,
                reasons: Sequence[Reason], inherited_from: str | None,
                timezone: str | None) -> str:
    """Why `area` has its level, in the page language: the declarations and inheritance.

    `level` is the level's label (None: no level); `baseline` is True when no declaration
    holds and the scheme's baseline level applies; `inherited_from` names the ancestor
    whose declaration sets the level, when none names the area itself.
    """
    if lang == "kk":
        return _explain_kk(area, level, baseline, reasons, inherited_from, timezone)
    if lang == "ru":
        return _explain_ru(area, level, baseline, reasons, inherited_from, timezone)
    return _explain_en(area, level, baseline, reasons, inherited_from, timezone)


def _explain_en(area: str, level: str | None, baseline: bool, reasons: Sequence[Reason],
                inherited_from: str | None, timezone: str | None) -> str:
    if level is None:
        return f"No level is declared for {area}: no declaration is in effect."
    if baseline or not reasons:
        return f"{area} is at the baseline level, {level}: no declaration is in effect."
    parts = [
        f"the {'countrywide ' if r.countrywide else ''}declaration of "
        f"{format_date(r.effective, timezone, 'en')} for {r.where}"
        for r in reasons
    ]
    verb = "is" if len(parts) == 1 else "are"
    text = f"{area} has this level because {' and '.join(parts)} {verb} in effect"
    if inherited_from:
        text += f" (inherited: {area} is part of {inherited_from})"
    return text + "."


def _explain_ru(area: str, level: str | None, baseline: bool, reasons: Sequence[Reason],
                inherited_from: str | None, timezone: str | None) -> str:
    if level is None:
        return f"Для территории «{area}» уровень не объявлен: ни одно объявление не действует."
    if baseline or not reasons:
        return (f"Для территории «{area}» действует базовый уровень — {level}: ни одно "
                "объявление не действует.")
    parts = [
        f"{'общегосударственное ' if r.countrywide else ''}объявление от "
        f"{format_date(r.effective, timezone, 'ru')} для территории «{r.where}»"
        for r in reasons
    ]
    verb = "действует" if len(parts) == 1 else "действуют"
    text = (f"Для территории «{area}» установлен этот уровень, потому что {verb} "
            f"{' и '.join(parts)}.")
    if inherited_from:
        text += f" Уровень унаследован: «{area}» входит в территорию «{inherited_from}»."
    return text


def _explain_kk(area: str, level: str | None, baseline: bool, reasons: Sequence[Reason],
                inherited_from: str | None, timezone: str | None) -> str:
    if level is None:
        return f"«{area}» үшін деңгей жарияланбаған: күшіндегі мәлімдеме жоқ."
    if baseline or not reasons:
        return f"«{area}» үшін базалық деңгей қолданылады — {level}: күшіндегі мәлімдеме жоқ."
    parts = [
        f"«{r.where}» аумағына {'бүкіл ел бойынша ' if r.countrywide else ''}"
        f"{_date(_local(r.effective, timezone), 'kk', locative=True)} жарияланған мәлімдеме"
        for r in reasons
    ]
    text = f"«{area}» үшін бұл деңгей {' және '.join(parts)} күшінде болғандықтан белгіленген."
    if inherited_from:
        text += f" Деңгей мұраланған: «{area}» «{inherited_from}» аумағының құрамына кіреді."
    return text


# Alphabet order for sorting names: Python compares code points, which puts Kazakh letters
# such as Ә, Ғ, Қ, Ң, Ө, Ұ, Ү, Һ, І after Я.
_ALPHABETS = {
    "kk": "аәбвгғдеёжзийкқлмнңоөпрстуұүфхһцчшщъыіьэюя",
    "ru": "абвгдеёжзийклмнопрстуфхцчшщъыьэюя",
}


def collation_key(text: str, lang: str) -> tuple[int, ...]:
    """A sort key that orders names by the alphabet of `lang` (code points otherwise)."""
    alphabet = _ALPHABETS.get(lang, "")
    return tuple(
        alphabet.index(ch) if ch in alphabet else len(alphabet) + ord(ch)
        for ch in text.lower()
    )
